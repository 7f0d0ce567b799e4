"""Stuck steps: faults injected into the SCO notification adapter, and the operator's retry or skip."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.worker import Replayer

from activities.custody import CustodyNotice
from activities.notify import DeliveryNotice
from tpt import search_attributes as sa
from tpt.audit.store import AuditStore
from tpt.client import TransferClient
from tpt.contract import TransferRequest
from tpt.demo import SimulatedParties
from tpt.ids import shipment_id
from tpt.messages import OpsAction, ShipmentStatus, StepRetry
from tpt.ops.client import OpsClient, OpsRefused
from tpt.stages import Stage
from workers.transfer_worker import WORKFLOWS, build_worker

from ..conftest import Database, eventually
from ..keys import OPERATOR_ID as OPERATOR
from ..keys import TEST_KEYS
from .conftest import drive_until, event_types, example, quiet, running_worker

FAST_RETRY = StepRetry(attempts=3, first_backoff=timedelta(milliseconds=50), max_backoff=timedelta(milliseconds=100),
                       timeout=timedelta(seconds=1))
TPT = str(Path(sys.executable).parent / "tpt")


class FaultyNotifier:
    """The adapter, faked at its interface: fails `failures` times (forever if None), or hangs, then recovers."""

    def __init__(self, failures: int | None = None, hang: bool = False):
        self.failures, self.hang, self.calls = failures, hang, 0

    def recover(self) -> None:
        self.failures, self.hang = 0, False

    async def notify(self, office: str, notice: DeliveryNotice) -> str:
        self.calls += 1
        if self.hang:
            await asyncio.sleep(3600)
        if self.failures is None or self.failures > 0:
            self.failures = None if self.failures is None else self.failures - 1
            raise ConnectionError(f"{office} message gateway unreachable")
        return f"msg:{office}"


class FaultyEeumRegistry:
    """The EEUM registry adapter, faked at its interface: unreachable until it recovers."""

    def __init__(self) -> None:
        self.down = True
        self.registered: list[str] = []

    def recover(self) -> None:
        self.down = False

    async def register_custody(self, notice: CustodyNotice) -> str:
        if self.down:
            raise ConnectionError("EEUM registry unreachable")
        self.registered.append(notice.leg)
        return f"eeum:{notice.leg}"


async def flagged(client: Client, workflow_id: str) -> bool:
    found = (await client.get_workflow_handle(workflow_id).describe()).typed_search_attributes
    return found.get(sa.NEEDS_ATTENTION) is True


async def in_visibility(client: Client, query: str) -> bool:
    """The list query finds a workflow (the Temporal UI's workflow list runs the same query)."""
    return [e async for e in client.list_workflows(query)] != []


async def test_a_transient_fault_heals_by_itself(client: Client, audit_store: AuditStore, task_queue: str) -> None:
    tpt, notifier = TransferClient(client, task_queue, TEST_KEYS), FaultyNotifier(failures=2)
    request = example("javelin-lt")
    async with running_worker(client, audit_store, task_queue, notifier):  # type: ignore[arg-type]
        await tpt.submit(request, step_retry=FAST_RETRY)
        status = await drive_until(tpt, request, stop=Stage.BACKFILL)
        await tpt.handle(request.transfer_id).terminate("test done")
    assert status.stage is Stage.BACKFILL and notifier.calls == 4  # two failures, then both offices
    types = await event_types(audit_store, request.transfer_id)
    assert "SCO_NOTIFIED" in types and "NEEDS_ATTENTION" not in types


@pytest.mark.parametrize("fault", ["fails", "hangs"])
async def test_a_permanent_fault_waits_for_an_operator_then_retry_completes(
    client: Client, audit_store: AuditStore, database: Database, task_queue: str, fault: str
) -> None:
    tpt = TransferClient(client, task_queue, TEST_KEYS)
    notifier = FaultyNotifier(hang=True) if fault == "hangs" else FaultyNotifier()
    request = example("javelin-lt")
    tid, child = request.transfer_id, shipment_id(request.transfer_id)
    ops = OpsClient(client)
    async with running_worker(client, audit_store, task_queue, notifier):  # type: ignore[arg-type]
        await tpt.submit(request, step_retry=FAST_RETRY)
        await deliver(tpt, request)
        await eventually(lambda: _stuck(ops, tid), timeout=30)
        await eventually(lambda: flagged(client, child))
        await eventually(lambda: in_visibility(client, f"NeedsAttention = true AND WorkflowId = '{child}'"))
        listed = next(s for s in await ops.stuck() if s.transfer_id == tid)
        assert (listed.stage, listed.step) == ("SHIPMENT", "notify security cooperation offices")
        expected = "timed out" if fault == "hangs" else "message gateway unreachable"
        assert expected in (listed.reason or "")

        env = ops_env(client, task_queue)
        code, shown, _ = await tpt_command(env, "ops", "stuck")
        assert code == 0 and tid in shown and expected in shown and "notify security cooperation offices" in shown
        notifier.recover()
        code, out, err = await tpt_command(env, "ops", "retry", tid, "--operator", "ops.duty@tpt",
                                           "--reason", "gateway back up")
        assert code == 0 and "retry of 'notify security cooperation offices'" in out, err
        status = await drive_until(tpt, request, stop=Stage.BACKFILL)
        assert status.stage is Stage.BACKFILL
        await eventually(lambda: _not(flagged(client, child)))
        await tpt.handle(tid).terminate("test done")
    events = await audit_store.history(tid)
    types = [e.event_type for e in events]
    assert types.index("NEEDS_ATTENTION") < types.index("OPS_RETRY") < types.index("ATTENTION_CLEARED") \
        < types.index("SCO_NOTIFIED")
    retry = next(e for e in events if e.event_type == "OPS_RETRY")
    assert (retry.actor, retry.role, retry.payload["reason"]) == ("ops.duty@tpt", "operator", "gateway back up")
    flag = next(e for e in events if e.event_type == "NEEDS_ATTENTION")
    assert expected in flag.payload["blocked_reason"]
    # The shipment counts its flags apart from the transfer's: the transfer's own first flag (an EEUM inventory
    # overdue, later) will be `{tid}:NEEDS_ATTENTION:1`, not this id again (which would be refused as a conflict).
    assert flag.event_id == f"{tid}/shipment:NEEDS_ATTENTION:1"
    assert await audit_store.verify(tid) == (len(events), [])


async def test_skip_goes_on_and_nothing_else_is_skippable(
    client: Client, audit_store: AuditStore, task_queue: str
) -> None:
    tpt, ops = TransferClient(client, task_queue, TEST_KEYS), OpsClient(client)
    request = example("javelin-lt")
    tid = request.transfer_id
    async with running_worker(client, audit_store, task_queue, FaultyNotifier()):  # type: ignore[arg-type]
        await tpt.submit(request, step_retry=FAST_RETRY)
        with pytest.raises(LookupError, match="no step of"):
            await ops.skip(tid, OpsAction(operator="ops.duty@tpt", reason="nothing to skip yet"))
        await deliver(tpt, request)
        await eventually(lambda: _stuck(ops, tid), timeout=30)
        await ops.skip(tid, OpsAction(operator="ops.duty@tpt", reason="offices told by phone"))
        with pytest.raises((OpsRefused, LookupError)):
            await ops.skip(tid, OpsAction(operator="ops.duty@tpt", reason="twice"))
        assert (await drive_until(tpt, request, stop=Stage.BACKFILL)).stage is Stage.BACKFILL
        await tpt.handle(tid).terminate("test done")
    events = await audit_store.history(tid)
    skip = next(e for e in events if e.event_type == "OPS_SKIP")
    assert (skip.actor, skip.payload["reason"], skip.payload["step"]) == (
        "ops.duty@tpt", "offices told by phone", "notify security cooperation offices")
    assert "SCO_NOTIFIED" not in [e.event_type for e in events]


async def test_an_irreversible_step_is_never_skipped_only_retried(
    client: Client, audit_store: AuditStore, task_queue: str
) -> None:
    """A leg has left with EEUM articles: registering its custody may be retried, never skipped."""
    tpt, ops, registry = TransferClient(client, task_queue, TEST_KEYS), OpsClient(client), FaultyEeumRegistry()
    request = example("javelin-lt")
    tid, env = request.transfer_id, ops_env(client, task_queue)
    step = "register custody of leg 'depot-to-hub' with the EEUM registry"
    async with build_worker(client, audit_store, task_queue, eeum_registry=registry):
        await tpt.submit(request, step_retry=FAST_RETRY)
        await deliver(tpt, request)  # every leg is handed over; the first one's registration is stuck
        await eventually(lambda: _stuck(ops, tid), timeout=30)
        [listed] = [s for s in await ops.stuck() if s.transfer_id == tid]
        assert (listed.step, listed.irreversible, listed.waits_for_operator) == (step, True, True)
        assert listed.attempts == FAST_RETRY.attempts and "EEUM registry unreachable" in (listed.last_failure or "")
        before = await event_types(audit_store, tid)
        code, _, err = await tpt_command(env, "ops", "skip", tid, "--operator", OPERATOR, "--reason", "registry down")
        assert code == 3 and "irreversible and cannot be skipped" in err, err
        assert await event_types(audit_store, tid) == before  # the refusal changed nothing
        registry.recover()
        assert (await ops.retry(tid, OpsAction(operator=OPERATOR, reason="registry up"))).step == step
        assert (await drive_until(tpt, request, stop=Stage.BACKFILL)).stage is Stage.BACKFILL
        await tpt.handle(tid).terminate("test done")
    assert registry.registered == ["depot-to-hub", "hub-to-border", "border-to-unit"]
    events = await audit_store.history(tid)
    types = [e.event_type for e in events]
    assert "OPS_SKIP" not in types and types.count("NEEDS_ATTENTION") == 1
    retry = next(e for e in events if e.event_type == "OPS_RETRY")
    assert (retry.actor, retry.payload["step"], retry.payload["reason"]) == (OPERATOR, step, "registry up")
    assert types.index("NEEDS_ATTENTION") < types.index("OPS_RETRY") < types.index("ATTENTION_CLEARED") \
        < types.index("SCO_NOTIFIED")
    # The step is new (patch shipment-eeum-custody-step): its history, stuck and retried, replays.
    history = await client.get_workflow_handle(shipment_id(tid)).fetch_history()
    replayed = await Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter).replay_workflow(history)
    assert replayed.replay_failure is None


def ops_env(client: Client, task_queue: str) -> dict[str, str]:
    """The environment a `tpt` subprocess needs to reach the test's Temporal server and task queue."""
    return os.environ | {"TPT_TEMPORAL_ADDRESS": client.service_client.config.target_host, "TPT_TASK_QUEUE": task_queue}


async def tpt_command(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Run the `tpt` command without blocking the event loop the test's worker runs on."""
    proc = await asyncio.create_subprocess_exec(TPT, *args, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode(), err.decode()


async def deliver(tpt: TransferClient, request: TransferRequest) -> None:
    """Hand the articles over along every leg (the delivery that triggers the notification)."""
    await drive_until(tpt, request, stop=Stage.SHIPMENT)
    parties = SimulatedParties(tpt, request, quiet)
    shipment = tpt.client.get_workflow_handle(shipment_id(request.transfer_id))
    while True:
        try:
            state = await shipment.query("status", result_type=ShipmentStatus)
        except RPCError:  # the child is still starting
            await asyncio.sleep(0.1)
            continue
        if len(state.handovers) == len(state.legs):
            return
        await parties.act(await tpt.status(request.transfer_id))


async def _stuck(ops: OpsClient, transfer_id: str) -> bool:
    return any(s.transfer_id == transfer_id for s in await ops.stuck())


async def _not(awaitable):  # type: ignore[no-untyped-def]
    return not await awaitable
