"""Backfill over simulated years: partial deliveries, reminders while nothing moves, continue-as-new."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateStage
from temporalio.testing import WorkflowEnvironment

from tpt.audit.store import AuditStore
from tpt.client import TransferClient
from tpt.ids import backfill_id
from tpt.messages import BackfillMechanism, BackfillRecord, BackfillStep, Deadlines, EeumInventory
from tpt.stages import Stage

from ..keys import TEST_KEYS
from .conftest import drive_until, ended, event_types, example, running_worker

REPORTER = "pl.mon.logistics"


async def final_delivery(env: WorkflowEnvironment, transfer_id: str, record: BackfillRecord) -> None:
    """The delivery that completes the backfill. The time-skipping test server forgets an update whose workflow
    closes in the same task, so wait only until it is accepted; the audit history and the result prove the rest."""
    handle = env.client.get_workflow_handle(backfill_id(transfer_id))
    await handle.start_update("record_backfill", record, wait_for_stage=WorkflowUpdateStage.ACCEPTED)


async def test_partial_deliveries_over_years_complete_the_transfer(
    time_env: WorkflowEnvironment, audit_store: AuditStore, task_queue: str
) -> None:
    tpt = TransferClient(time_env.client, task_queue, TEST_KEYS)
    request = example("himars-pl")
    tid, required = request.transfer_id, sum(i.quantity for i in request.items)
    async with running_worker(time_env.client, audit_store, task_queue):
        await tpt.submit(request, Deadlines(backfill_reminder=timedelta(days=90)))
        await drive_until(tpt, request, stop=Stage.BACKFILL)
        record = lambda **kw: tpt.record_backfill(tid, BackfillRecord(reporter=REPORTER, **kw))  # noqa: E731
        with pytest.raises(WorkflowUpdateFailedError) as early:
            await record(step=BackfillStep.DELIVERY, quantity=1)
        assert "before MECHANISM, LETTER_OF_REQUEST, LETTER_OF_OFFER" in str(early.value.cause)
        await record(step=BackfillStep.MECHANISM, mechanism=BackfillMechanism.FMF_FUNDED)
        await record(step=BackfillStep.LETTER_OF_REQUEST, reference="LOR-PL-2026-17")
        await time_env.sleep(timedelta(days=150))  # ~5 months from request to offer
        await record(step=BackfillStep.LETTER_OF_OFFER, reference="PL-B-ZAF")
        first = required // 3
        for quantity in (first, first):
            await time_env.sleep(timedelta(days=240))
            state = await record(step=BackfillStep.DELIVERY, quantity=quantity, reference="partial")
        assert state.replaced == 2 * first
        with pytest.raises(WorkflowUpdateFailedError) as too_many:
            await record(step=BackfillStep.DELIVERY, quantity=required, reference="too many")
        assert f"exceeds the {required - 2 * first} still to replace" in str(too_many.value.cause)
        await time_env.sleep(timedelta(days=240))
        await final_delivery(time_env, tid, BackfillRecord(reporter=REPORTER, step=BackfillStep.DELIVERY,
                                                          quantity=required - 2 * first, reference="last"))
        result = await ended(tpt, tid)
    assert result.stage is Stage.COMPLETED and result.backfill_replaced == required
    events = await audit_store.history(tid)
    deliveries = [e for e in events if e.event_type == "BACKFILL_RECORDED" and e.payload["step"] == "DELIVERY"]
    assert [e.payload["replaced"] for e in deliveries] == [first, 2 * first, required]
    assert deliveries[-1].workflow_time - events[0].workflow_time > timedelta(days=2 * 365)
    assert sum(e.event_type == "BACKFILL_REMINDER" for e in events) >= 5  # quiet stretches were chased
    assert all(e.event_id.startswith(f"{tid}/backfill:") for e in deliveries)  # counted apart from the transfer's
    assert await audit_store.verify(tid) == (len(events), [])


async def test_backfill_continues_as_new_without_losing_state_or_events(
    time_env: WorkflowEnvironment, audit_store: AuditStore, task_queue: str
) -> None:
    tpt = TransferClient(time_env.client, task_queue, TEST_KEYS)
    request = example("javelin-lt")
    tid = request.transfer_id
    serials = [s for i in request.items for s in i.serials]
    async with running_worker(time_env.client, audit_store, task_queue):
        await tpt.submit(request, Deadlines(backfill_reminder=timedelta(days=7)))
        await drive_until(tpt, request, stop=Stage.BACKFILL)
        await tpt.record_eeum_inventory(tid, EeumInventory(inspector="dsca.eeum", serials=serials))
        await time_env.sleep(timedelta(days=7 * 400))  # 400 weekly reminders: far more history than one run keeps
        state = await time_env.client.get_workflow_handle(backfill_id(tid)).query("status")
        assert state["runs"] > 1  # continued as new, carrying its state
        for step, extra in ((BackfillStep.MECHANISM, {"mechanism": BackfillMechanism.NATO_FUNDED}),
                            (BackfillStep.LETTER_OF_REQUEST, {"reference": "LOR"}),
                            (BackfillStep.LETTER_OF_OFFER, {"reference": "LOA"}),
                            ):
            await tpt.record_backfill(tid, BackfillRecord(reporter="lt.mod", step=step, **extra))
        await final_delivery(time_env, tid, BackfillRecord(reporter="lt.mod", step=BackfillStep.DELIVERY,
                                                           quantity=6, reference="all"))
        result = await ended(tpt, tid)
    assert result.stage is Stage.COMPLETED
    types = await event_types(audit_store, tid)
    assert types.count("BACKFILL_REMINDER") >= 390
    assert result.audit_events == len(types)  # nothing lost or doubled across the runs
    assert await audit_store.verify(tid) == (len(types), [])
