"""The `tpt` command alone: subprocesses against the real dev server and Postgres, a worker in the test process.

Exit codes under test: 0 ok, 2 bad input (nothing started), 3 refused (by the workflow, or a submit conflicting
with the request already under that id), 4 not found, 5 Temporal unreachable.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from tpt.audit.store import AuditStore
from tpt.client import TransferClient
from tpt.contract import TransferRequest
from tpt.demo import SimulatedParties
from tpt.messages import TransferStatus
from tpt.stages import Stage

from ..conftest import Database, eventually, free_port
from ..keys import TEST_KEYS, key_files
from ..workflow.conftest import example, quiet, running_worker, stages_entered

TPT = str(Path(sys.executable).with_name("tpt"))
BAD = Path(__file__).resolve().parents[1] / "data" / "bad"
LEGS = [("depot-to-hub", "PL depot", "Rzeszów-Jasionka hub"), ("hub-to-border", "Rzeszów-Jasionka hub", "UA border"),
        ("border-to-unit", "UA border", "UA artillery brigade")]
WATCHED = re.compile(r"^\[\d\d:\d\d:\d\d\] (\w+)")


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


@pytest.fixture
def env(client: Client, task_queue: str, database: Database) -> dict[str, str]:
    return {**os.environ, "TPT_TEMPORAL_ADDRESS": client.service_client.config.target_host,
            "TPT_TASK_QUEUE": task_queue, "TPT_DATABASE_URL": database.admin_url, "COLUMNS": "160"}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Each party's key file, `<actor>.key` (the decision commands sign with `--key`)."""
    return key_files(tmp_path_factory.mktemp("keys"))


async def tpt(env: dict[str, str], *args: str) -> Ran:
    proc = await asyncio.create_subprocess_exec(TPT, *args, env=env, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode(), err.decode())


async def ok(env: dict[str, str], *args: str) -> str:
    ran = await tpt(env, *args)
    assert ran.code == 0, f"tpt {' '.join(args)} exited {ran.code}: {ran.err}"
    return ran.out


async def until_stage(env: dict[str, str], tid: str, stage: str) -> dict[str, Any]:
    for _ in range(50):
        shown: dict[str, Any] = json.loads(await ok(env, "status", tid, "--json"))
        if shown["stage"] == stage:
            return shown
        await asyncio.sleep(0.2)
    raise AssertionError(f"{tid} did not reach {stage}")


def write(tmp_path: Path, request: TransferRequest, name: str = "request.json", **changes: Any) -> Path:
    data = request.model_dump(mode="json") | changes
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True) if name.endswith(".yaml") else json.dumps(data))
    return path


async def test_cli_drives_a_transfer_from_submission_to_completion(
    env: dict[str, str], client: Client, audit_store: AuditStore, task_queue: str, tmp_path: Path, keys: Path
) -> None:
    request = example("himars-pl")  # individual U.S. review, no congressional notification
    tid, file = request.transfer_id, write(tmp_path, request, "himars.yaml")
    async with running_worker(client, audit_store, task_queue):
        assert f"submitted {tid}" in await ok(env, "submit", str(file))
        seats = (("pl.mon.signer", "MOD"), ("pl.dke.signer", "DKE"))
        await asyncio.gather(*(ok(env, "sign-off", tid, "--key", str(keys / f"{signer}.key"), "--role", role,
                                  "--approve") for signer, role in seats))
        await until_stage(env, tid, "US_REVIEW")
        await ok(env | {"TPT_SIGNING_KEY": str(keys / "pm.rsat.reviewer.key")}, "decide", tid, "--office", "PM_RSAT",
                 "--approve", "--proviso", "no retransfer without U.S. consent")
        await until_stage(env, tid, "SHIPMENT")
        for leg, giver, taker in LEGS:
            await ok(env, "handover", tid, "--leg", leg, "--from", giver, "--to", taker)
        await until_stage(env, tid, "BACKFILL")
        for step in (["MECHANISM", "--mechanism", "fms_case"], ["LETTER_OF_REQUEST", "--reference", "LOR-PL-14"],
                     ["LETTER_OF_OFFER", "--reference", "PL-B-ZAU"], ["DELIVERY", "--quantity", "12"]):
            await ok(env, "backfill", tid, "--reporter", "pl.mon.logistics", "--step", *step)
        watched = (await ok(env, "watch", tid)).splitlines()  # returns once the transfer has ended
        shown = json.loads(await ok(env, "status", tid, "--json"))
        text = await ok(env, "status", tid)

    assert WATCHED.match(watched[-1]) and "COMPLETED" in watched[-1]
    assert (shown["stage"], shown["backfill_replaced"], shown["us_decision"]["provisos"]) == (
        "COMPLETED", 12, ["no retransfer without U.S. consent"])
    assert shown["request_digest"] == request.digest()  # the YAML file is the very same request
    assert "APPROVE by pm.rsat.reviewer (PM_RSAT)" in text and "COMPLETED: backfill complete" in text
    assert await stages_entered(audit_store, tid) == ["ALLY_SIGNOFF", "US_REVIEW", "SHIPMENT", "BACKFILL", "COMPLETED"]
    listed = await eventually(lambda: _listed(env, tid, "--donor", "PL", "--stage", "completed"))
    assert (listed["route"], listed["recipient"]) == ("PM_RSAT", "UA")


async def test_malformed_files_exit_2_naming_the_field_and_start_nothing(
    env: dict[str, str], client: Client, task_queue: str
) -> None:
    expected = {
        "bad-json.json": "request: Invalid JSON: expected `,` or `}` at line 6 column 3",
        "unknown-field.json": "items[0].warranty_months: unknown field",
        "usml-xxii.json": "items[0].usml_category: 'XXII' is not a USML category",
        "eeum-missing-serials.yaml": "items[0].serials: EEUM item needs exactly one serial per unit",
    }
    runs = await asyncio.gather(*(tpt(env, "submit", str(BAD / name)) for name in expected))
    for (name, message), ran in zip(expected.items(), runs, strict=True):
        assert (ran.code, ran.out) == (2, ""), f"{name}: {ran}"
        assert message in ran.err and "nothing was sent" in ran.err, f"{name}: {ran.err}"
    for tid in ("TPT-BAD-FIELD-0001", "TPT-BAD-USML-0001", "TPT-BAD-EEUM-0001", "TPT-BAD-JSON-0001"):
        with pytest.raises(RPCError) as missing:
            await client.get_workflow_handle(tid).describe()
        assert missing.value.status is RPCStatusCode.NOT_FOUND
    assert (await client.count_workflows(f'TaskQueue = "{task_queue}" OR WorkflowId STARTS_WITH "TPT-BAD-"')).count == 0


async def test_repeated_submit_is_idempotent_and_refusals_exit_3_with_the_reason(
    env: dict[str, str], client: Client, audit_store: AuditStore, task_queue: str, tmp_path: Path, keys: Path
) -> None:
    request = example("javelin-lt")
    tid, file = request.transfer_id, write(tmp_path, request)
    different = write(tmp_path, request, "different.json", end_use="Training of Ukrainian crews")
    async with running_worker(client, audit_store, task_queue):
        assert f"submitted {tid}" in await ok(env, "submit", str(file))
        assert "already submitted with this same request" in await ok(env, "submit", str(file))
        await _conflicts(env, different)
        await until_stage(env, tid, "ALLY_SIGNOFF")
        refusals = await asyncio.gather(
            tpt(env, "sign-off", tid, "--signer", "lt.mfa.signer", "--role", "MOD", "--approve"),
            tpt(env, "decide", tid, "--reviewer", "pm.rsat.reviewer", "--office", "PM_RSAT", "--deny"),
            tpt(env, "handover", tid, "--leg", "depot-to-hub", "--from", "LT depot", "--to", "hub"),
            tpt(env, "withdraw", tid, "--actor", "lt.mod.signer", "--reason", "not mine to withdraw"))
        for ran, reason in zip(refusals, ["lt.mfa.signer holds no MOD seat for LT",
                                          "a U.S. decision is accepted only in US_REVIEW; transfer is in ALLY_SIGNOFF",
                                          "accepted once the transfer reaches SHIPMENT; it is in ALLY_SIGNOFF",
                                          "only the requester requester@kam.lt may withdraw"], strict=True):
            assert ran.code == 3 and f"{tid}: refused: " in ran.err and reason in ran.err, ran
        unsigned = await tpt(env, "withdraw", tid, "--actor", request.requested_by, "--reason", "stock redeployed")
        assert unsigned.code == 3 and "is not signed" in unsigned.err, unsigned
        await ok(env, "withdraw", tid, "--key", str(keys / f"{request.requested_by}.key"), "--reason",
                 "stock redeployed")
        code, screen = await _in_terminal(env, "watch", tid)  # the live view, on a (pseudo) terminal
        assert "already submitted" in await ok(env, "submit", str(file))  # after the transfer has ended too
        await _conflicts(env, different)
    assert code == 0 and "\x1b[" in screen and "WITHDRAWN: withdrawn by requester@kam.lt" in screen, screen
    assert "▶ ALLY_SIGNOFF" not in screen
    await eventually(lambda: _counted(client, f'WorkflowId = "{tid}"', 1))


async def test_unknown_transfer_exits_4_and_unreachable_temporal_exits_5(env: dict[str, str]) -> None:
    unknown = "TPT-T-NO-SUCH-TRANSFER"
    offline = env | {"TPT_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"}
    runs = await asyncio.gather(
        tpt(env, "status", unknown), tpt(env, "sign-off", unknown, "--signer", "a", "--role", "MOD", "--reject"),
        tpt(env, "handover", unknown, "--leg", "depot-to-hub", "--from", "a", "--to", "b"),
        tpt(offline, "status", unknown), tpt(offline, "list", "--json"))
    for ran in runs[:3]:
        assert ran.code == 4 and f"no transfer {unknown}" in ran.err, ran
    for ran in runs[3:]:
        assert ran.code == 5 and "is the stack running? start it with `tpt dev`" in ran.err, ran
        assert offline["TPT_TEMPORAL_ADDRESS"] in ran.err


async def test_watch_prints_each_stage_as_it_changes(
    env: dict[str, str], client: Client, audit_store: AuditStore, task_queue: str
) -> None:
    tpt_sdk = TransferClient(client, task_queue, TEST_KEYS)
    request = example("himars-pl")
    tid, lines = request.transfer_id, []
    async with running_worker(client, audit_store, task_queue):
        await tpt_sdk.submit(request)
        watch = await asyncio.create_subprocess_exec(TPT, "watch", tid, "--interval", "0.2", env=env,
                                                     stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert watch.stdout is not None
        reader = asyncio.create_task(_collect(watch.stdout, lines))
        parties = SimulatedParties(tpt_sdk, request, quiet)
        while not (status := await tpt_sdk.status(tid)).stage.is_terminal:
            # Advance only once the watcher has printed the state the transfer is in.
            if status.stage is not Stage.REQUESTED and not await _printed_within(lines, status, watch):
                raise AssertionError(f"watch never printed {status.stage.value}: {lines} {await _ended(watch)}")
            if not await parties.act(status):
                await asyncio.sleep(0.1)
        await asyncio.wait_for(reader, 30)
        assert await watch.wait() == 0

    stages = [m.group(1) for m in map(WATCHED.match, lines) if m]
    assert len(stages) == len(lines), lines  # every line is a change line
    assert _collapsed(stages) == ["ALLY_SIGNOFF", "US_REVIEW", "SHIPMENT", "BACKFILL", "COMPLETED"], lines
    assert any("ALLY_SIGNOFF · signed 1/2: MOD pl.mon.signer approved · awaiting" in line for line in lines), lines
    assert any("signed 2/2: MOD pl.mon.signer approved, DKE pl.dke.signer approved" in line for line in lines)
    assert any("ALLY_SIGNOFF" in line and "awaiting 2 more sign-off(s) of PL" in line for line in lines), lines
    assert any("US_REVIEW" in line and "awaiting U.S. decision by PM_RSAT" in line for line in lines), lines


async def _conflicts(env: dict[str, str], file: Path) -> None:
    ran = await tpt(env, "submit", str(file))
    assert ran.code == 3 and "already submitted with a different request" in ran.err, ran


async def _listed(env: dict[str, str], tid: str, *filters: str) -> dict[str, Any] | None:
    found: list[dict[str, Any]] = json.loads(await ok(env, "list", *filters, "--json"))
    return next((s for s in found if s["transfer_id"] == tid), None)


async def _counted(client: Client, query: str, expected: int) -> bool:
    return (await client.count_workflows(query)).count == expected


async def _collect(stream: asyncio.StreamReader, lines: list[str]) -> None:
    async for raw in stream:
        lines.append(raw.decode().rstrip("\n"))


async def _printed_within(lines: list[str], status: TransferStatus, watch: asyncio.subprocess.Process) -> bool:
    signed = f" · signed {len(status.signatures)}/" if status.signatures else ""
    for _ in range(150):
        if any(f"] {status.stage.value}{signed}" in line for line in lines):
            return True
        if watch.returncode is not None:
            return False
        await asyncio.sleep(0.1)
    return False


async def _ended(proc: asyncio.subprocess.Process) -> str:
    if proc.returncode is None:
        proc.kill()
    assert proc.stderr is not None
    return f"exit {await proc.wait()}: {(await proc.stderr.read()).decode()}"


def _collapsed(stages: list[str]) -> list[str]:
    order: list[str] = []
    for stage in stages:
        if stage != Stage.REQUESTED.value and (not order or order[-1] != stage):
            order.append(stage)
    return order


async def _in_terminal(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run `tpt` with its output on a pseudo-terminal, as a person at a shell would."""
    controller, terminal = os.openpty()
    proc = await asyncio.create_subprocess_exec(TPT, *args, env=env | {"TERM": "xterm-256color"},
                                                stdin=asyncio.subprocess.DEVNULL, stdout=terminal, stderr=terminal)
    os.close(terminal)
    screen = await asyncio.to_thread(_read_until_closed, controller)
    return await asyncio.wait_for(proc.wait(), 30), screen


def _read_until_closed(fd: int) -> str:
    chunks = []
    try:
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    except OSError:  # EIO: the other side closed
        pass
    finally:
        os.close(fd)
    return b"".join(chunks).decode(errors="replace")
