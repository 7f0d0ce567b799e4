"""Bad input through the SDK and the `tpt` command (issue 11, point 4).

Hypothesis generates requests and decisions: random JSON, wrong types, huge values, odd unicode, long text, line
item counts around the contract's cap (MAX_ITEMS = 1000) up to 10,000. Each must be either accepted and valid (the
transfer starts and reaches ally sign-off; the decision is recorded) or refused with a clear error (a typed SDK
error naming the field or the reason; for the CLI an `error:` line and the documented exit code). Nothing refused
may leave a workflow behind (workflows are counted by id on the task queue), and the worker must not crash.
Payload limits: the contract's item cap, and Temporal's own (2 MB per payload, 4 MB per gRPC message on the dev
server) must come back as a clear refusal with nothing started.

All tests share one worker process and one task queue (module scope); `Ledger` knows every transfer started.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, Phase, example, given, seed, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from temporalio.client import Client, WorkflowExecutionStatus

from tpt import registry
from tpt.client import TransferClient
from tpt.contract import MAX_ITEMS, TransferRequest, format_validation_error
from tpt.errors import DecisionRefused, TransferConflict, TransferError, TransferValidationError
from tpt.messages import (
    Amendment,
    BackfillMechanism,
    BackfillRecord,
    BackfillStep,
    EeumInventory,
    EmergencyWaiver,
    Handover,
    JointResolution,
    SignOff,
    TransferStatus,
    UsDecision,
    UsOutcome,
    Withdrawal,
)
from tpt.request_file import parse_request
from tpt.stages import Stage

from ..conftest import Database
from ..keys import TEST_KEYS
from .conftest import (
    EXAMPLES,
    HYPOTHESIS_EXAMPLES,
    SEED,
    TPT,
    LoopThread,
    TemporalStack,
    WorkerProcess,
    check_audit,
    open_store,
    record,
    run_facts,
    scratch_dir,
    worker_process,
    workflow_statuses,
)

pytestmark = pytest.mark.timeout(600)

# No shrink phase: every example goes to real servers, and a stuck one costs a timeout each time it is replayed;
# the strategies change one field of a real request at a time, so a failing example is already small.
FUZZ = settings(max_examples=HYPOTHESIS_EXAMPLES, deadline=None, database=None, print_blob=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example,
                                       HealthCheck.function_scoped_fixture])
UPDATE_TIMEOUT = timedelta(seconds=20)  # an update that hangs is a failure; do not wait the SDK's minute for it
STAGE_TIMEOUT = 20.0  # a valid transfer reaches ally sign-off in a second or two
PLACEHOLDER = "TPT-FUZZ-PLACEHOLDER"  # replaced by a fresh transfer id unless the example changed it
# Words that betray an internal error reaching a person instead of a refusal they can act on.
INTERNAL = re.compile(r"RuntimeError|AttributeError|TypeError|KeyError|IndexError|NoneType|Failed decoding|"
                      r"Traceback|object has no attribute")
SIZE_LIMIT = (re.compile(r"size|larger|too (big|large)", re.I), re.compile(r"limit|max", re.I))


# --- what has been started on the shared task queue --------------------------------------------------------

@dataclass
class Ledger:
    started: set[str] = field(default_factory=set)  # transfer ids accepted (a workflow must exist for each)
    figures: Counter[str] = field(default_factory=Counter)
    samples: dict[str, str] = field(default_factory=dict)  # one message of each kind of refusal, for the report

    def sample(self, kind: str, message: str) -> None:
        self.samples.setdefault(kind, message[:300])


@pytest.fixture(scope="module")
def ledger() -> Ledger:
    return Ledger()


@pytest.fixture(scope="module")
def fuzz_queue() -> str:
    return f"rel-fuzz-{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def fuzz_worker(temporal: TemporalStack, temporal_client: Client, database: Database,
                      fuzz_queue: str) -> AsyncIterator[WorkerProcess]:
    with scratch_dir("rel-fuzz") as where, worker_process(temporal_client, temporal.address, fuzz_queue,
                                                          database.worker_url, where) as worker:
        await worker.start()
        yield worker


@pytest.fixture(scope="module")
def sdk_loop() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def sdk(sdk_loop: LoopThread, temporal: TemporalStack, fuzz_queue: str, fuzz_worker: WorkerProcess) -> TransferClient:
    client = TransferClient(sdk_loop.run(temporal.connect()), fuzz_queue, TEST_KEYS)
    client.update_timeout = UPDATE_TIMEOUT
    return client


def fresh_id() -> str:
    return f"TPT-FUZZ-{uuid.uuid4().hex[:12].upper()}"


def base_request(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    data["transfer_id"] = PLACEHOLDER
    return data


def plain_items(count: int) -> list[dict[str, Any]]:
    """Line items valid on their own (no EEUM, no serials), to probe the item count alone."""
    return [{"nsn": "1005-01-231-0973", "nomenclature": f"Rifle, 5.56 mm, M4 carbine, lot {i}", "usml_category": "I",
             "quantity": 1, "unit_value_usd": "1100.00", "sme": False, "mde": False, "eeum": False, "serials": []}
            for i in range(count)]


# --- strategies ----------------------------------------------------------------------------------------------

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12))
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
HUGE = st.sampled_from([10**30, -(10**30), 2**63, -(2**63) - 1, 10**400, 1e308, float("inf"), float("nan"),
                        "9" * 5000, "1e999", "-0.001", -1, 0])
ODD_TEXT = st.sampled_from(["\u202eevil", "\x00", "ＴＰＴ－ＤＥ－１", "Ⅳ", "ⅳ", "İv", "🛡️" * 50, "a\ud800b", " ",
                            "\t\n", "ß", "NO", "null", "{0}", "%s", "'; DROP TABLE audit_events; --"])
UNICODE = st.one_of(st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=30), ODD_TEXT)
LONG_TEXT = st.sampled_from([1001, 5000]).map(lambda n: "ü" * n)
VALUES = st.one_of(JSON_VALUES, HUGE, UNICODE, LONG_TEXT)
ITEM_COUNTS = st.sampled_from([0, 1, 999, MAX_ITEMS, MAX_ITEMS + 1, 10_000])
TOP_FIELDS = sorted(TransferRequest.model_fields)
ITEM_FIELDS = ["nsn", "nomenclature", "usml_category", "quantity", "unit_value_usd", "sme", "mde", "eeum", "serials"]


@st.composite
def requests(draw: st.DrawFn) -> Any:
    data = base_request(draw(st.sampled_from(["javelin-lt", "nvg-nl-dcs"])))
    how = draw(st.sampled_from(["field", "field", "item field", "item field", "drop", "extra", "items", "whole",
                                "unchanged"]))
    if how == "field":
        data[draw(st.sampled_from(TOP_FIELDS))] = draw(VALUES)
    elif how == "item field":
        data["items"][0][draw(st.sampled_from(ITEM_FIELDS))] = draw(VALUES)
    elif how == "drop":
        data.pop(draw(st.sampled_from(sorted(data))))
    elif how == "extra":
        data[draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in data))] = draw(VALUES)
    elif how == "items":
        data["items"] = plain_items(draw(ITEM_COUNTS))
    elif how == "whole":
        return draw(VALUES)
    return data


def with_fresh_id(data: Any) -> Any:
    if isinstance(data, dict) and data.get("transfer_id") == PLACEHOLDER:
        return data | {"transfer_id": fresh_id()}
    return data


# --- what counts as a clear refusal ----------------------------------------------------------------------

def unclear(err: BaseException) -> str | None:
    """Why this refusal would not help a person (None when it is clear): untyped, empty, or an internal error."""
    if isinstance(err, TransferValidationError):
        if not err.problems or not all(path and message.strip() for path, message in err.problems):
            return f"validation error without a field path and reason: {err.problems!r}"
    elif isinstance(err, DecisionRefused):
        if not err.reason.strip():
            return "refused without a reason"
    elif isinstance(err, TransferConflict):
        pass
    elif isinstance(err, TransferError):
        if not all(p.search(str(err)) for p in SIZE_LIMIT):
            return f"{type(err).__name__} that is neither a refusal nor a size limit: {err}"
    else:
        return f"{type(err).__name__} is not one of the SDK's typed errors: {err}"
    if INTERNAL.search(str(err)):
        return f"an internal error reached the caller: {err}"
    return None


def assert_clear(err: BaseException) -> None:
    problem = unclear(err)
    assert problem is None, problem


def assert_pydantic_clear(err: ValidationError) -> None:
    """Each problem has a reason; the path is empty only for the request as a whole."""
    problems = err.errors()
    assert problems and all(str(p["msg"]).strip() for p in problems), problems
    assert format_validation_error(err).strip()


def workflow_state(sdk: TransferClient, loop: LoopThread, transfer_id: str) -> str:
    return next(iter(loop.run(workflow_statuses(sdk.client, [transfer_id]))))


def assert_nothing_started(sdk: TransferClient, loop: LoopThread, ledger: Ledger, data: Any) -> None:
    tid = data.get("transfer_id") if isinstance(data, dict) else None
    could_be_a_workflow_id = isinstance(tid, str) and 0 < len(tid) <= 255 and tid.isprintable()
    if could_be_a_workflow_id and tid not in ledger.started:
        assert workflow_state(sdk, loop, tid) == "NOT_FOUND", f"a refused request left workflow {tid} behind"


async def _transfers_on_queue(client: Client, queue: str) -> set[str]:
    query = f'TaskQueue = "{queue}" AND WorkflowType = "TransferWorkflow"'
    return {w.id async for w in client.list_workflows(query)}


def assert_ledger_matches(sdk: TransferClient, loop: LoopThread, ledger: Ledger, worker: WorkerProcess) -> None:
    """Every accepted transfer has its workflow, and no other transfer workflow exists on the queue (visibility
    is a moment behind, so it is polled); the worker is the one started for the module, still running."""

    async def settled() -> set[str]:
        for _ in range(100):
            found = await _transfers_on_queue(sdk.client, sdk.task_queue)
            if found == ledger.started:
                break
            await asyncio.sleep(0.2)
        return found

    found = loop.run(settled())
    assert found == ledger.started, (f"workflows without an accepted request: {sorted(found - ledger.started)[:10]}; "
                                     f"accepted requests without a workflow: {sorted(ledger.started - found)[:10]}")
    crashed = worker.crashed()
    assert crashed is None and worker.starts == 1, crashed


def assert_no_task_failures(sdk: TransferClient, loop: LoopThread, transfer_ids: set[str]) -> None:
    async def failures() -> list[str]:
        found: list[str] = []
        for tid in sorted(transfer_ids):
            history = await sdk.client.get_workflow_handle(tid).fetch_history()
            found += run_facts(tid, history.events).task_failures
        return found

    found = loop.run(failures())
    assert found == [], found[:5]


def wait_for_stage(sdk: TransferClient, loop: LoopThread, tid: str, stages: set[Stage],
                   worker: WorkerProcess | None = None) -> TransferStatus:
    async def reached() -> TransferStatus:
        deadline = asyncio.get_running_loop().time() + STAGE_TIMEOUT
        while True:
            status = await sdk.status(tid)
            if status.stage in stages or asyncio.get_running_loop().time() > deadline:
                return status
            await asyncio.sleep(0.1)

    status = loop.run(reached())
    if status.stage not in stages:
        why = last_activity_failure(worker.log, tid) if worker else ""
        raise AssertionError(f"{tid} accepted but still in {status.stage.value} after {STAGE_TIMEOUT:.0f}s "
                             f"({status.audit_events} audit events){why}")
    return status


def last_activity_failure(log: Path, tid: str) -> str:
    """The worker's last word on a failing activity of this transfer (its log is JSON lines)."""
    found = ""
    for line in log.read_text(errors="replace").splitlines():
        if tid not in line or "exc_info" not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        error = entry.get("exc_info")
        error = " ".join(map(str, error[:2])) if isinstance(error, list) else str(error)
        found = f"; the worker logged: {entry.get('event', '')[:120]} {error[:300]}"
    return found


# --- requests through the SDK ------------------------------------------------------------------------------

def test_generated_requests_are_accepted_and_valid_or_refused_clearly(
    sdk: TransferClient, sdk_loop: LoopThread, ledger: Ledger, fuzz_worker: WorkerProcess,
) -> None:
    accepted: set[str] = set()

    @FUZZ
    @seed(SEED)
    @example(data=base_request("javelin-lt") | {"items": plain_items(10_000)})
    @example(data=base_request("nvg-nl-dcs") | {"end_use": "a\ud800b"})
    @given(data=requests())
    def check(data: Any) -> None:
        data = with_fresh_id(data)
        ledger.figures["requests_generated"] += 1
        try:
            request = TransferRequest.model_validate(data)
        except ValidationError as err:
            assert_pydantic_clear(err)
            with pytest.raises(TransferError) as refused:  # the SDK refuses the same mapping, typed
                sdk_loop.run(sdk.submit(data))
            assert_clear(refused.value)
            assert isinstance(refused.value, TransferValidationError), refused.value
            if isinstance(data, dict) and isinstance(data.get("items"), list) and len(data["items"]) > MAX_ITEMS:
                assert any(p == "items" and str(MAX_ITEMS) in m for p, m in refused.value.problems), refused.value
            ledger.figures["requests_refused_by_contract"] += 1
            ledger.sample("request refused by the contract", str(refused.value))
            assert_nothing_started(sdk, sdk_loop, ledger, data)
            return
        try:
            sdk_loop.run(sdk.submit(request))
        except TransferError as err:  # valid, yet refused: a conflict on the id, or Temporal's size limits
            assert_clear(err)
            ledger.figures["requests_refused_by_temporal"] += 1
            ledger.sample(f"valid request refused: {type(err).__name__}", str(err))
            assert_nothing_started(sdk, sdk_loop, ledger, data)
            return
        ledger.started.add(request.transfer_id)
        accepted.add(request.transfer_id)
        ledger.figures["requests_accepted"] += 1
        status = wait_for_stage(sdk, sdk_loop, request.transfer_id, {Stage.ALLY_SIGNOFF}, fuzz_worker)
        assert status.request_digest == request.digest()

    check()
    assert_ledger_matches(sdk, sdk_loop, ledger, fuzz_worker)
    assert_no_task_failures(sdk, sdk_loop, accepted)
    record("bad_input", **ledger.figures, refusal_samples=ledger.samples)


def test_a_field_name_containing_a_line_separator_is_still_named_in_the_refusal() -> None:
    """Minimal form of a refusal hypothesis found unclear: an unknown field whose name holds a character that
    str.splitlines() breaks on (here U+001E) loses its path, because the SDK splits the formatted message into
    lines to rebuild (path, message) pairs (tpt/errors.py TransferValidationError.from_pydantic)."""
    data = base_request("javelin-lt") | {"transfer_id": fresh_id(), "note\x1eX": 1}
    with pytest.raises(TransferValidationError) as refused:
        parse_request(data)
    assert refused.value.problems == [("note\x1eX", "unknown field; remove it or check its spelling")]


def test_a_request_with_a_nul_character_is_refused_or_recorded(
    sdk: TransferClient, sdk_loop: LoopThread, ledger: Ledger, fuzz_worker: WorkerProcess,
) -> None:
    """Minimal form of an accepted request that never moves: the contract lets U+0000 through in actor ids (and
    in text that reaches an audit payload), Postgres cannot store it in text or jsonb, so the first audit append
    fails on every retry and the transfer stays in REQUESTED for ever, with nothing recorded and nothing flagged.
    Either the contract refuses it (naming the field) or the transfer is recorded and reaches ally sign-off."""
    data = base_request("javelin-lt") | {"transfer_id": fresh_id(), "requested_by": "requester\x00@kam.lt"}
    try:
        request = TransferRequest.model_validate(data)
    except ValidationError as err:
        assert any(e["loc"] == ("requested_by",) for e in err.errors()), err
        return
    sdk_loop.run(sdk.submit(request))
    ledger.started.add(request.transfer_id)
    wait_for_stage(sdk, sdk_loop, request.transfer_id, {Stage.ALLY_SIGNOFF}, fuzz_worker)


# --- decisions through the SDK -----------------------------------------------------------------------------

DECISIONS: dict[str, type[BaseModel]] = {
    "sign_off": SignOff, "amend": Amendment, "withdraw": Withdrawal, "us_decision": UsDecision,
    "emergency_waiver": EmergencyWaiver, "joint_resolution": JointResolution,
    "record_eeum_inventory": EeumInventory, "record_handover": Handover, "record_backfill": BackfillRecord,
}
DECISION_NAMES = st.sampled_from(["sign_off", "sign_off", "sign_off", "amend", "amend", *DECISIONS])


def valid_decision(name: str, request: TransferRequest, status: TransferStatus) -> dict[str, Any]:
    """A decision each party could really send now (it may still be refused: wrong stage, already signed, …)."""
    people = registry.for_donor(request.donor)
    serials = [s for item in request.items if item.eeum for s in item.serials]
    signed = {s.role for s in status.signatures}
    role, signers = next(((r, p) for r, p in people.signoff.seats.items() if r not in signed),
                         next(iter(people.signoff.seats.items())))
    office = status.policy.route.value if status.policy else "PM_RSAT"
    amended = request.model_copy(update={"end_use": f"{request.end_use} (v{status.request_version + 1})"})
    made: BaseModel = {
        "sign_off": lambda: SignOff(signer=signers[0], nation=request.donor, role=role, approve=True,
                                    request_digest=status.request_digest),
        "amend": lambda: Amendment(actor=request.requested_by, reason="end use clarified", request=amended),
        "withdraw": lambda: Withdrawal(actor=request.requested_by, reason="no longer needed"),
        "us_decision": lambda: UsDecision(reviewer=people.reviewers[office][0], office=office,
                                          outcome=UsOutcome.APPROVE, request_digest=status.request_digest),
        "emergency_waiver": lambda: EmergencyWaiver(official=people.waiver_officials[0],
                                                    justification="Imminent threat to air defence of Kharkiv."),
        "joint_resolution": lambda: JointResolution(recorder=people.congressional_recorders[0],
                                                    citation="H.J.Res. 1, enacted 2026-01-05"),
        "record_eeum_inventory": lambda: EeumInventory(inspector="dsca.eeum.inspector", serials=serials),
        "record_handover": lambda: Handover(leg="depot-to-hub", from_party=f"{request.donor} depot",
                                            to_party="Rzeszów-Jasionka hub", serials=serials),
        "record_backfill": lambda: BackfillRecord(reporter=f"{request.donor.lower()}.mod.logistics",
                                                  step=BackfillStep.MECHANISM, mechanism=BackfillMechanism.FMS_CASE),
    }[name]()
    return made.model_dump(mode="json")


@st.composite
def decision_changes(draw: st.DrawFn) -> tuple[str, str, str | None, Any]:
    name = draw(DECISION_NAMES)
    how = draw(st.sampled_from(["unchanged", "field", "field", "field", "drop", "extra"]))
    key = draw(st.sampled_from(sorted(DECISIONS[name].model_fields))) if how in ("field", "drop") else None
    if how == "extra":
        key = draw(st.text(min_size=1, max_size=10).filter(lambda k: k not in DECISIONS[name].model_fields))
    return name, how, key, draw(VALUES) if how in ("field", "extra") else None


@dataclass
class Targets:
    """Transfers the generated decisions are sent to; one that has ended is replaced by a fresh one."""

    sdk: TransferClient
    loop: LoopThread
    ledger: Ledger
    worker: WorkerProcess
    live: list[TransferRequest] = field(default_factory=list)
    all: dict[str, TransferRequest] = field(default_factory=dict)

    def pick(self, index: int) -> tuple[TransferRequest, TransferStatus]:
        while len(self.live) < 3:
            self.live.append(self._new())
        request = self.live[index % len(self.live)]
        status = self.loop.run(self.sdk.status(request.transfer_id))
        if status.stage.is_terminal:
            self.live.remove(request)
            return self.pick(index)
        return request, status

    def _new(self) -> TransferRequest:
        data = base_request(["javelin-lt", "nvg-nl-dcs"][len(self.all) % 2]) | {"transfer_id": fresh_id()}
        request = TransferRequest.model_validate(data)
        self.loop.run(self.sdk.submit(request))
        self.ledger.started.add(request.transfer_id)
        self.all[request.transfer_id] = request
        wait_for_stage(self.sdk, self.loop, request.transfer_id, {Stage.ALLY_SIGNOFF}, self.worker)
        return request


def test_generated_decisions_are_accepted_or_refused_clearly(
    sdk: TransferClient, sdk_loop: LoopThread, ledger: Ledger, fuzz_worker: WorkerProcess,
) -> None:
    targets = Targets(sdk, sdk_loop, ledger, fuzz_worker)
    outcomes: Counter[str] = Counter()

    @FUZZ
    @seed(SEED)
    @example(change=("sign_off", "field", "request_digest", "a\ud800b" * 22), target=0)
    @example(change=("sign_off", "field", "comment", "signed\x00"), target=1)
    @given(change=decision_changes(), target=st.integers(0, 2))
    def check(change: tuple[str, str, str | None, Any], target: int) -> None:
        name, how, key, value = change
        request, status = targets.pick(target)
        payload = valid_decision(name, request, status)
        if how in ("field", "extra"):
            payload[key] = value  # type: ignore[index]
        elif how == "drop":
            payload.pop(key)  # type: ignore[arg-type]
        try:
            decision = DECISIONS[name].model_validate(payload)
        except ValidationError as err:
            assert_pydantic_clear(err)
            outcomes["refused by the model"] += 1
            return
        try:
            sdk_loop.run(getattr(sdk, name)(request.transfer_id, decision))
        except TransferError as err:
            assert_clear(err)
            outcomes[f"refused: {type(err).__name__}"] += 1
            ledger.sample(f"decision refused: {type(err).__name__}", str(err))
            return
        outcomes[f"accepted: {name}"] += 1

    check()
    assert_ledger_matches(sdk, sdk_loop, ledger, fuzz_worker)
    assert_no_task_failures(sdk, sdk_loop, set(targets.all))

    async def audit() -> Any:
        results: dict[str, TransferStatus | None] = {}
        for tid in targets.all:
            described = await sdk.client.get_workflow_handle(tid).describe()
            done = described.status is WorkflowExecutionStatus.COMPLETED
            results[tid] = await sdk.handle(tid).result() if done else None
        async with open_store(fuzz_worker.database_url) as store:
            return await check_audit(sdk.client, store, results)

    checked = sdk_loop.run(audit())
    accepted = sum(n for k, n in outcomes.items() if k.startswith("accepted"))
    record("bad_input", decisions_generated=sum(outcomes.values()), decisions_accepted=accepted,
           decision_outcomes=dict(outcomes), decision_targets=len(targets.all), refusal_samples=ledger.samples,
           events_checked=checked.events_checked, updates_checked=checked.updates_checked, lost=checked.lost,
           duplicated=checked.duplicated)
    checked.assert_clean()


@st.composite
def wrong_shapes(draw: st.DrawFn) -> tuple[str, Any]:
    """A decision that is not the SDK's model at all: any JSON, or a near-miss dict, sent as it is."""
    name = draw(st.sampled_from(sorted(DECISIONS)))
    if draw(st.booleans()):
        return name, draw(VALUES)
    fields = sorted(DECISIONS[name].model_fields)
    return name, draw(st.dictionaries(st.sampled_from(fields), VALUES, max_size=len(fields)))


def test_decisions_of_the_wrong_shape_are_refused_clearly(
    sdk: TransferClient, sdk_loop: LoopThread, ledger: Ledger, fuzz_worker: WorkerProcess,
) -> None:
    """The SDK's decision methods are typed, but Python lets a caller pass a dict (as `submit` accepts one) or
    anything else; what comes back must still be a typed refusal that says what is wrong."""
    targets = Targets(sdk, sdk_loop, ledger, fuzz_worker)

    @FUZZ
    @seed(SEED)
    @example(shape=("sign_off", None))
    @example(shape=("sign_off", {"signer": "lt.mod.signer"}))
    @given(shape=wrong_shapes())
    def check(shape: tuple[str, Any]) -> None:
        name, payload = shape
        request, _ = targets.pick(0)
        try:
            sdk_loop.run(getattr(sdk, name)(request.transfer_id, payload))
        except TransferError as err:
            ledger.sample(f"wrong-shape decision refused: {type(err).__name__}", str(err))
            assert_clear(err)

    check()
    assert_ledger_matches(sdk, sdk_loop, ledger, fuzz_worker)
    assert_no_task_failures(sdk, sdk_loop, set(targets.all))


# --- payload limits --------------------------------------------------------------------------------------

def oversized_request(megabytes: float) -> dict[str, Any]:
    """Valid under the contract (≤ 1000 items, one serial per unit) but about `megabytes` of JSON: 500 items with a
    1000-character nomenclature and as many 64-character serials as it takes."""
    count, fixed, per_serial = 500, 1200, 67
    quantity = max(1, int((megabytes * 1_000_000 / count - fixed) / per_serial))
    items = [{"nsn": "1005-01-231-0973", "nomenclature": "N" * 1000, "usml_category": "I", "quantity": quantity,
              "unit_value_usd": "1.00", "sme": False, "mde": False, "eeum": False,
              "serials": [f"S{i:04d}-{j:06d}-".ljust(64, "x") for j in range(quantity)]} for i in range(count)]
    return base_request("nvg-nl-dcs") | {"transfer_id": fresh_id(), "items": items}


def cli_env(sdk: TransferClient) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("TPT_")}
    return inherited | {"TPT_TEMPORAL_ADDRESS": sdk.address, "TPT_TASK_QUEUE": sdk.task_queue, "COLUMNS": "200",
                        "TPT_LOG_FORMAT": "json"}


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


def tpt_submit(sdk: TransferClient, path: Path) -> Ran:
    done = subprocess.run([TPT, "submit", str(path)], env=cli_env(sdk), capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    return Ran(done.returncode, done.stdout, done.stderr)


def assert_cli_refusal_is_clear(ran: Ran, code: int) -> None:
    assert ran.code == code, f"exit {ran.code}, expected {code}: {ran.err}"
    assert ran.err.startswith("error: "), ran.err
    assert "Traceback" not in ran.err and not INTERNAL.search(ran.err), ran.err


def test_payload_limits_are_enforced_with_a_clear_message(
    sdk: TransferClient, sdk_loop: LoopThread, ledger: Ledger, fuzz_worker: WorkerProcess, tmp_path: Path,
) -> None:
    limits: dict[str, str] = {}

    # The contract's cap: 10,000 line items are refused naming the limit, by the SDK and the CLI; nothing starts.
    many = base_request("javelin-lt") | {"transfer_id": fresh_id(), "items": plain_items(10_000)}
    with pytest.raises(TransferValidationError) as refused:
        sdk_loop.run(sdk.submit(many))
    assert [p for p, _ in refused.value.problems] == ["items"]
    assert f"1 to {MAX_ITEMS} line items (got 10000)" in str(refused.value)
    limits["items (SDK)"] = str(refused.value)
    (tmp_path / "many.json").write_text(json.dumps(many))
    ran = tpt_submit(sdk, tmp_path / "many.json")
    assert_cli_refusal_is_clear(ran, 2)
    assert "items" in ran.err and f"1 to {MAX_ITEMS}" in ran.err, ran.err
    limits["items (CLI)"] = ran.err.strip()
    assert_nothing_started(sdk, sdk_loop, ledger, many)

    # Temporal's limits on a request the contract accepts: 2 MB per payload, 4 MB per gRPC message.
    for megabytes, label in ((2.5, "Temporal payload limit"), (4.5, "gRPC message limit")):
        data = oversized_request(megabytes)
        request = TransferRequest.model_validate(data)
        assert 0.95 < len(request.model_dump_json()) / (megabytes * 1_000_000) < 1.05
        with pytest.raises(TransferError) as too_big:
            sdk_loop.run(sdk.submit(request))
        assert_clear(too_big.value)
        limits[f"{label} (SDK)"] = str(too_big.value)
        assert_nothing_started(sdk, sdk_loop, ledger, data)
        path = tmp_path / f"big-{megabytes}.json"
        path.write_text(json.dumps(data))
        ran = tpt_submit(sdk, path)
        assert ran.code != 0 and all(p.search(ran.err) for p in SIZE_LIMIT), ran
        assert "Traceback" not in ran.err, ran.err
        limits[f"{label} (CLI, exit {ran.code})"] = ran.err.strip()
        assert_nothing_started(sdk, sdk_loop, ledger, data)

    # Below Temporal's limit (and above its 512 KB warning) a valid request is simply accepted.
    data = oversized_request(1.2)
    request = TransferRequest.model_validate(data)
    sdk_loop.run(sdk.submit(request))
    ledger.started.add(request.transfer_id)
    wait_for_stage(sdk, sdk_loop, request.transfer_id, {Stage.ALLY_SIGNOFF}, fuzz_worker)

    assert_ledger_matches(sdk, sdk_loop, ledger, fuzz_worker)
    record("bad_input", limit_messages=limits)

    # A decision over the payload limit is refused by the SDK, naming the field, before anything is sent. (A raw
    # Temporal client bypassing the SDK is not covered: Temporal echoes a rejected update's input in the rejection,
    # so the worker cannot refuse one over 2 MB; see the README's threat notes.) Nothing is recorded and the
    # transfer takes the next decision.
    target, status = new_target(sdk, sdk_loop, ledger, fuzz_worker)
    oversized = valid_decision("sign_off", target, status) | {"comment": "x" * 2_500_000}
    decision = SignOff.model_construct(**oversized)  # what a caller skipping validation would pass
    with pytest.raises(TransferValidationError) as too_big:
        sdk_loop.run(sdk.sign_off(target.transfer_id, decision))
    assert too_big.value.paths == ["comment"], too_big.value
    limits["decision over the payload limit (SDK)"] = str(too_big.value)
    record("bad_input", limit_messages=limits)
    after = sdk_loop.run(status_once_answering(sdk, target.transfer_id))
    assert after.signatures == [] and after.audit_events == status.audit_events
    accepted = sdk_loop.run(sdk.sign_off(target.transfer_id, decision.model_copy(update={"comment": "signed"})))
    assert [s.role for s in accepted.signatures] == [decision.role]
    recorded = sdk_loop.run(audit_event_types(fuzz_worker.database_url, target.transfer_id))
    assert recorded == ["TRANSFER_REQUESTED", "STAGE_ENTERED", "SIGN_OFF"]
    assert_clear(too_big.value)


def test_an_oversized_decision_its_sender_gave_up_on_does_not_wedge_the_transfer(
    sdk: TransferClient, sdk_loop: LoopThread, ledger: Ledger, fuzz_worker: WorkerProcess,
) -> None:
    """Minimal form: a decision over Temporal's 2 MB payload limit makes every workflow task fail (the worker may not
    upload it). If the sender stops waiting before Temporal gives the update up (a CLI interrupted, a client with a
    short timeout), the update is delivered again with every retried task, so the transfer answers no status query
    and takes no decision for minutes (over five, when tried by hand). It must be refused without touching the
    transfer, e.g. by a size bound in the decision's model or its validator."""
    target, status = new_target(sdk, sdk_loop, ledger, fuzz_worker)
    hasty = TransferClient(sdk.client, sdk.task_queue, TEST_KEYS)
    hasty.update_timeout = timedelta(seconds=5)
    oversized = valid_decision("sign_off", target, status) | {"comment": "x" * 2_500_000}
    with pytest.raises(TransferValidationError):  # refused by its model's bound before anything is sent
        sdk_loop.run(hasty.sign_off(target.transfer_id, SignOff.model_construct(**oversized)))
    try:
        after = sdk_loop.run(status_once_answering(sdk, target.transfer_id, within=60))
    except TransferError as err:
        raise AssertionError(f"{target.transfer_id} still answers nothing 60 s after an oversized decision was "
                             f"abandoned: {err}") from None
    assert after.signatures == [] and after.audit_events == status.audit_events


def new_target(sdk: TransferClient, loop: LoopThread, ledger: Ledger,
               worker: WorkerProcess) -> tuple[TransferRequest, TransferStatus]:
    """A fresh fast-track transfer waiting for ally sign-off."""
    target = TransferRequest.model_validate(base_request("javelin-lt") | {"transfer_id": fresh_id()})
    loop.run(sdk.submit(target))
    ledger.started.add(target.transfer_id)
    return target, wait_for_stage(sdk, loop, target.transfer_id, {Stage.ALLY_SIGNOFF}, worker)


async def status_once_answering(sdk: TransferClient, tid: str, within: float = 90.0) -> TransferStatus:
    """The status as soon as the workflow answers again (a workflow task that failed is retried by Temporal)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            return await sdk.status(tid)
        except TransferError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)


async def audit_event_types(url: str, tid: str) -> list[str]:
    async with open_store(url) as store:
        return [e.event_type for e in await store.history(tid)]


# --- requests through the CLI ------------------------------------------------------------------------------

def generated(strategy: st.SearchStrategy[Any], count: int) -> list[Any]:
    """`count` values of a strategy (seeded by TPT_RELIABILITY_SEED), for checks that run outside hypothesis."""
    found: list[Any] = []

    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @seed(SEED)
    @given(strategy)
    def collect(value: Any) -> None:
        found.append(value)

    collect()
    return found[:count]


def test_the_cli_accepts_or_refuses_generated_request_files_clearly(
    sdk: TransferClient, sdk_loop: LoopThread, ledger: Ledger, fuzz_worker: WorkerProcess, tmp_path: Path,
) -> None:
    """`tpt submit FILE`: exit 0 and the transfer started, or exit 2 naming the problems and nothing started
    (3 for a conflicting id). Files are JSON or YAML as generated, plus text that is not JSON at all."""
    import yaml

    cases: list[tuple[Path, Any]] = []
    for i, data in enumerate(generated(requests(), max(6, HYPOTHESIS_EXAMPLES // 5))):
        data = with_fresh_id(data)
        path = tmp_path / f"request-{i}.json"
        # Half the files ASCII-escaped, half raw UTF-8 (a lone surrogate then makes the file invalid UTF-8).
        path.write_bytes(json.dumps(data, ensure_ascii=i % 2 == 0).encode("utf-8", "surrogatepass"))
        cases.append((path, data))
    for i, data in enumerate(generated(requests(), 3)):
        data = with_fresh_id(data)
        path = tmp_path / f"request-{i}.yaml"
        try:
            path.write_bytes(yaml.safe_dump(data, allow_unicode=True).encode("utf-8", "surrogatepass"))
        except yaml.YAMLError:
            continue
        cases.append((path, data))
    for name, text in (("truncated.json", '{"transfer_id": "TPT-X-1", "items": ['), ("empty.json", ""),
                       ("binary.json", "\x00\x01\x02"), ("list.yaml", "- 1\n- 2\n"), ("tabs.yaml", "a:\n\tb: 1\n")):
        (tmp_path / name).write_text(text)
        cases.append((tmp_path / name, None))
    valid = base_request("javelin-lt") | {"transfer_id": fresh_id()}
    (tmp_path / "valid.json").write_text(json.dumps(valid))
    cases.append((tmp_path / "valid.json", valid))

    with ThreadPoolExecutor(max_workers=2) as pool:  # two cores: two CLI processes at a time
        runs = list(pool.map(lambda case: tpt_submit(sdk, case[0]), cases))

    codes: Counter[int] = Counter()
    for (path, data), ran in zip(cases, runs, strict=True):
        codes[ran.code] += 1
        if ran.code == 0:
            tid = data["transfer_id"]
            assert f"submitted {tid}" in ran.out or "already submitted" in ran.out, ran.out
            ledger.started.add(tid)
            continue
        assert ran.code in (2, 3), f"{path.name}: exit {ran.code}: {ran.err}"
        assert_cli_refusal_is_clear(ran, ran.code)
        if ran.code == 2:
            assert ran.err.startswith("error: invalid input ("), ran.err
            assert "nothing was sent" in ran.err, ran.err
        ledger.sample(f"CLI exit {ran.code}", ran.err)
        assert_nothing_started(sdk, sdk_loop, ledger, data)
    assert codes[0] >= 1, "not even the valid file was accepted"
    assert valid["transfer_id"] in ledger.started

    assert_ledger_matches(sdk, sdk_loop, ledger, fuzz_worker)
    record("bad_input", cli_files=len(cases), cli_exit_codes={str(k): v for k, v in sorted(codes.items())},
           transfers_started=len(ledger.started),
           transfer_workflows_on_queue=len(sdk_loop.run(_transfers_on_queue(sdk.client, sdk.task_queue))),
           workflow_states=dict(sdk_loop.run(workflow_statuses(sdk.client, sorted(ledger.started)))),
           worker_pid_unchanged=fuzz_worker.starts == 1, refusal_samples=ledger.samples)

