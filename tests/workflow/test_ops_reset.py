"""`tpt ops reset --to-stage`: a Temporal workflow reset to the start of a stage, on the record, with no audit event
or decision counted twice; refused for stages not reached and once a shipment leg has left."""

from __future__ import annotations

from collections import Counter

import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from tpt.audit.store import AuditStore
from tpt.client import TransferClient
from tpt.ids import shipment_id
from tpt.messages import OpsAction
from tpt.ops.client import OpsClient, OpsRefused
from tpt.ops.history import ResetRefused
from tpt.stages import Stage
from workers.transfer_worker import WORKFLOWS

from ..conftest import eventually
from ..keys import OPERATOR_ID, TEST_KEYS
from .conftest import drive_until, example, running_worker
from .test_ops import ops_env, tpt_command

LEAD = ("--operator", OPERATOR_ID, "--reason", "sign-offs given against a superseded signer registry")


async def running(client: Client, workflow_id: str) -> bool:
    try:
        return (await client.get_workflow_handle(workflow_id).describe()).status is WorkflowExecutionStatus.RUNNING
    except Exception:
        return False


async def test_reset_to_a_stage_undoes_what_came_after_and_counts_nothing_twice(
    client: Client, audit_store: AuditStore, task_queue: str
) -> None:
    tpt, ops = TransferClient(client, task_queue, TEST_KEYS), OpsClient(client)
    request = example("himars-pl")  # individual U.S. review, no congressional notification, no EEUM
    tid = request.transfer_id
    env = ops_env(client, task_queue)
    async with running_worker(client, audit_store, task_queue):
        await tpt.submit(request)
        reached = await drive_until(tpt, request, stop=Stage.SHIPMENT)
        await eventually(lambda: running(client, shipment_id(tid)))
        quorum = reached.quorum
        assert len(reached.signatures) == quorum and reached.us_decision is not None
        old_run = (await tpt.handle(tid).describe()).run_id

        code, _, err = await tpt_command(env, "ops", "reset", tid, "--to-stage", "CONGRESSIONAL_REVIEW", *LEAD, "--yes")
        assert code == 3 and "has not reached CONGRESSIONAL_REVIEW" in err, err
        with pytest.raises(ResetRefused, match="not a stage a reset can go back to"):
            await ops.plan_reset(tid, Stage.BACKFILL)

        rows_before = await audit_store.history(tid)
        code, out, err = await tpt_command(env, "ops", "reset", tid, "--to-stage", "ALLY_SIGNOFF", *LEAD, "--dry-run")
        assert code == 0, err
        assert f"would reset: {tid}: SHIPMENT → start of ALLY_SIGNOFF" in out
        assert f"sign_off ×{quorum}" in out and "us_decision ×1" in out and "1 transfer(s) would be changed" in out
        assert (await tpt.handle(tid).describe()).run_id == old_run and await audit_store.history(tid) == rows_before

        code, out, err = await tpt_command(env, "ops", "reset", tid, "--to-stage", "ALLY_SIGNOFF", *LEAD, "--yes")
        assert code == 0 and "reset: 1 done" in out, out + err
        new_run = (await tpt.handle(tid).describe()).run_id
        assert new_run != old_run
        after = await tpt.status(tid)
        # Back at the start of sign-off: the decisions since are undone, not reapplied.
        assert (after.stage, after.signatures, after.us_decision) == (Stage.ALLY_SIGNOFF, [], None)
        assert not await running(client, shipment_id(tid))  # no leg had left: the new run starts it again
        rows = await audit_store.history(tid)
        assert rows[:len(rows_before)] == rows_before
        [reset] = rows[len(rows_before):]  # the reset itself added one event, and nothing was appended twice
        assert (reset.event_type, reset.actor, reset.role, reset.stage) == (
            "OPS_RESET", OPERATOR_ID, "operator", Stage.ALLY_SIGNOFF)
        assert reset.payload["reason"] == LEAD[3]
        assert (reset.payload["to_stage"], reset.payload["from_stage"]) == ("ALLY_SIGNOFF", "SHIPMENT")
        assert (reset.payload["from_run_id"], reset.payload["run_id"]) == (old_run, new_run)
        with pytest.raises(OpsRefused, match="already on the record"):
            await ops.record_reset(tid, OpsAction(operator=OPERATOR_ID, reason="twice"), {})

        # The parties decide again; each decision counts once.
        await drive_until(tpt, request, stop=Stage.SHIPMENT)
        await eventually(lambda: running(client, shipment_id(tid)))  # the new shipment, not the one ended before
        done = await drive_until(tpt, request, stop=Stage.BACKFILL)
        assert len(done.signatures) == quorum and done.us_decision is not None
        with pytest.raises(ResetRefused, match="a shipment leg has left, which is irreversible"):
            await ops.plan_reset(tid, Stage.US_REVIEW)
        final_run = (await tpt.handle(tid).describe()).run_id
        await tpt.handle(tid).terminate("test done")

    events = await audit_store.history(tid)
    assert len({e.event_id for e in events}) == len(events)
    assert await audit_store.verify(tid) == (len(events), [])
    at = next(i for i, e in enumerate(events) if e.event_type == "OPS_RESET")
    redone = Counter(e.event_type for e in events[at + 1:])
    assert (redone["SIGN_OFF"], redone["US_DECISION"], redone["OPS_RESET"]) == (quorum, 1, 0)
    entered = [e.payload["to"] for e in events[at + 1:] if e.event_type == "STAGE_ENTERED"]
    assert entered == ["US_REVIEW", "SHIPMENT", "BACKFILL"]  # ALLY_SIGNOFF is not entered a second time
    # The run the reset created replays from its history (a worker restarted after a reset picks it up again).
    history = await client.get_workflow_handle(tid, run_id=final_run).fetch_history()
    replayed = await Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter).replay_workflow(history)
    assert replayed.replay_failure is None
    assert final_run == new_run
