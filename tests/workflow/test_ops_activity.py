"""Temporal's own tools, wrapped: pause, unpause and reset a failing activity (each on the record), and `tpt ops stuck`
listing transfers over their stage's SLA with the failing activity's attempts and last failure."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from temporalio.client import Client

from tpt.audit.store import AuditStore
from tpt.client import TransferClient
from tpt.ids import shipment_id
from tpt.messages import OpsAction, StepRetry
from tpt.ops.client import NothingStuck, OpsClient, OpsRefused
from tpt.ops.slas import SlaError, stage_slas
from tpt.stages import Stage

from ..conftest import eventually
from ..keys import OPERATOR_ID, TEST_KEYS
from .conftest import drive_until, example, running_worker
from .test_ops import FaultyNotifier, deliver, ops_env, tpt_command

# Retries that go on (long enough for an operator to act) rather than run out.
PATIENT = StepRetry(attempts=10_000, first_backoff=timedelta(milliseconds=100), max_backoff=timedelta(milliseconds=200),
                    timeout=timedelta(seconds=2))
ACTIVITY = "notify_security_cooperation_offices"
WHO = ("--operator", OPERATOR_ID)


async def notify_activity(client: Client, transfer_id: str):  # type: ignore[no-untyped-def]
    described = await client.get_workflow_handle(shipment_id(transfer_id)).describe()
    return next((p for p in described.raw_description.pending_activities if p.activity_type.name == ACTIVITY), None)


async def test_pause_unpause_and_reset_a_failing_activity_and_list_what_is_over_its_sla(
    client: Client, audit_store: AuditStore, task_queue: str
) -> None:
    tpt, ops, notifier = TransferClient(client, task_queue, TEST_KEYS), OpsClient(client), FaultyNotifier()
    shipping, signing = example("javelin-lt"), example("himars-pl")
    tid, waiting = shipping.transfer_id, signing.transfer_id
    env, mine = ops_env(client, task_queue), f"TaskQueue = '{task_queue}'"
    async with running_worker(client, audit_store, task_queue, notifier):  # type: ignore[arg-type]
        await tpt.submit(shipping, step_retry=PATIENT)
        await tpt.submit(signing)
        await drive_until(tpt, signing, stop=Stage.ALLY_SIGNOFF)  # nobody signs: it waits
        await deliver(tpt, shipping)

        async def failing() -> bool:
            pending = await notify_activity(client, tid)
            return pending is not None and pending.attempt >= 3

        await eventually(failing, timeout=30)
        # Neither waits for an operator (no retries ran out): only their stages' SLAs make them stuck.
        assert [s for s in await ops.stuck(mine, slas={}) if s.transfer_id in (tid, waiting)] == []
        code, out, err = await tpt_command(env, "ops", "stuck", "--query", mine, "--sla", "SHIPMENT=1s",
                                           "--sla", "ALLY_SIGNOFF=0s")
        assert code == 0, err
        assert f"{tid}  SHIPMENT" in out and f"[over SLA]  {ACTIVITY}" in out and "over its SLA of 1s" in out
        assert "SCO-LT message gateway unreachable" in out and f"in {shipment_id(tid)}" in out
        assert f"{waiting}  ALLY_SIGNOFF" in out and "awaiting 2 more sign-off(s) of PL" in out
        listed = {s.transfer_id: s for s in await ops.stuck(mine, {Stage.SHIPMENT: timedelta(0)})}
        late = listed[tid]
        assert (late.stage, late.step, late.sla, late.waits_for_operator) == ("SHIPMENT", ACTIVITY, timedelta(0), False)
        assert late.attempts is not None and late.attempts >= 3
        assert late.since == (await tpt.status(tid)).stage_entered_at
        assert "message gateway unreachable" in (late.last_failure or "") and waiting not in listed  # its SLA: 10 days
        with pytest.raises(SlaError, match="not a stage"):
            stage_slas(["NOWHERE=1d"])

        # A transfer no worker runs: listed from visibility alone, once its stage's SLA has passed since it started.
        idle = example("himars-pl")
        await TransferClient(client, f"{task_queue}-idle", TEST_KEYS).submit(idle)
        ops.query_timeout = 1.0
        both = f"{mine} OR TaskQueue = '{task_queue}-idle'"
        unanswered = next(s for s in await ops.stuck(both, {Stage.REQUESTED: timedelta(0)})
                          if s.transfer_id == idle.transfer_id)
        assert (unanswered.stage, unanswered.sla) == ("REQUESTED", timedelta(0))
        assert "no worker answers its status query" in (unanswered.reason or "")
        await client.get_workflow_handle(idle.transfer_id).terminate("test done")

        code, out, err = await tpt_command(env, "ops", "pause", tid, "--activity", ACTIVITY, *WHO,
                                           "--reason", "gateway vendor is patching; stop hammering it")
        assert code == 0 and f"paused {ACTIVITY} in {shipment_id(tid)}" in out, err
        assert (await notify_activity(client, tid)).paused
        calls = notifier.calls
        await asyncio.sleep(1.0)
        assert notifier.calls - calls <= 2  # at most the attempt already running when it was paused
        assert (await ops.stuck(mine, {Stage.SHIPMENT: timedelta(0)}))[0].paused

        await ops.unpause_activity(tid, ACTIVITY, OpsAction(operator=OPERATOR_ID, reason="patch window over"))
        assert not (await notify_activity(client, tid)).paused
        with pytest.raises(OpsRefused, match="not paused"):
            await ops.unpause_activity(tid, ACTIVITY, OpsAction(operator=OPERATOR_ID, reason="again"))
        with pytest.raises(NothingStuck, match=f"pending now: {ACTIVITY}"):
            await ops.pause_activity(tid, "no_such_activity", OpsAction(operator=OPERATOR_ID, reason="typo"))

        await ops.pause_activity(tid, ACTIVITY, OpsAction(operator=OPERATOR_ID, reason="hold on"))
        notifier.recover()
        await asyncio.sleep(0.5)
        assert (await notify_activity(client, tid)).paused  # paused: the gateway's recovery is not noticed
        code, out, err = await tpt_command(env, "ops", "reset-activity", tid, "--activity", ACTIVITY, *WHO,
                                           "--reason", "gateway fixed: try now, from attempt 1")
        assert code == 0 and f"reset {ACTIVITY} in {shipment_id(tid)}" in out, err
        assert (await drive_until(tpt, shipping, stop=Stage.BACKFILL)).delivered_at is not None
        await tpt.handle(tid).terminate("test done")
        await tpt.handle(waiting).terminate("test done")
    events = await audit_store.history(tid)
    noted = [(e.event_type, e.actor, e.role, e.stage, e.payload["activity_type"], e.payload["workflow_id"])
             for e in events if e.event_type.startswith("OPS_")]
    assert noted == [(kind, OPERATOR_ID, "operator", Stage.SHIPMENT, ACTIVITY, shipment_id(tid)) for kind in (
        "OPS_PAUSE_ACTIVITY", "OPS_UNPAUSE_ACTIVITY", "OPS_PAUSE_ACTIVITY", "OPS_RESET_ACTIVITY")]
    reasons = [e.payload["reason"] for e in events if e.event_type.startswith("OPS_")]
    assert reasons[0] == "gateway vendor is patching; stop hammering it" and reasons[3].startswith("gateway fixed")
    assert "NEEDS_ATTENTION" not in [e.event_type for e in events] and "SCO_NOTIFIED" in [e.event_type for e in events]
    assert await audit_store.verify(tid) == (len(events), [])
