"""The walking skeleton end to end on the real dev server and real Postgres, through a worker restart."""

from __future__ import annotations

import uuid

import pytest
from temporalio.client import Client, WorkflowUpdateFailedError

from tpt import search_attributes as sa
from tpt.audit.store import AuditStore
from tpt.client import TransferClient
from tpt.demo import demo_request
from tpt.messages import BackfillDelivery, Handover, SignOff, UsDecision, UsOutcome
from tpt.stages import Stage
from workers.transfer_worker import build_worker

from ..conftest import eventually

LT_SIGNER = SignOff(signer="lt.mod.signer", nation="LT", role="MOD", approve=True)


def fresh_request():  # type: ignore[no-untyped-def]
    request = demo_request()
    return request.model_copy(update={"transfer_id": f"TPT-WF-{uuid.uuid4().hex[:10].upper()}"})


async def stage_visible(client: Client, transfer_id: str, stage: Stage) -> bool:
    query = f'WorkflowId = "{transfer_id}" AND {sa.TRANSFER_STAGE.name} = "{stage.value}"'
    return (await client.count_workflows(query)).count == 1


async def test_transfer_walks_every_stage_across_a_worker_restart(
    client: Client, audit_store: AuditStore, task_queue: str, log_capture: list[dict[str, object]]
) -> None:
    tpt = TransferClient(client, task_queue)
    request = fresh_request()
    tid = request.transfer_id

    async with build_worker(client, audit_store, task_queue):
        await tpt.submit(request)
        await tpt.sign_off(tid, LT_SIGNER)
        await eventually(lambda: stage_visible(client, tid, Stage.US_REVIEW))

    # A new worker process picks the transfer up where the old one left it.
    async with build_worker(client, audit_store, task_queue):
        await tpt.us_decision(tid, UsDecision(reviewer="pm.rsat.r1", office="PM/RSAT", outcome=UsOutcome.APPROVE))
        await tpt.record_handover(tid, Handover(leg="hub-to-unit", from_party="LT logistics",
                                                to_party="UA unit", delivered=True))
        await tpt.record_backfill(tid, BackfillDelivery(reporter="lt.mod.log", quantity=4))
        result = await tpt.handle(tid).result()

    assert result.stage == Stage.COMPLETED
    await eventually(lambda: stage_visible(client, tid, Stage.COMPLETED))
    events = await audit_store.history(tid)
    assert [(e.event_type, e.stage.value) for e in events] == [
        ("TRANSFER_REQUESTED", "REQUESTED"),
        ("STAGE_ENTERED", "ALLY_SIGNOFF"),
        ("SIGN_OFF", "ALLY_SIGNOFF"),
        ("STAGE_ENTERED", "US_REVIEW"),
        ("US_DECISION", "US_REVIEW"),
        ("STAGE_ENTERED", "SHIPMENT"),
        ("HANDOVER", "SHIPMENT"),
        ("STAGE_ENTERED", "BACKFILL"),
        ("BACKFILL_DELIVERY", "BACKFILL"),
        ("STAGE_ENTERED", "COMPLETED"),
    ]
    assert {e.request_digest for e in events} == {request.digest()}
    assert events[2].actor == "lt.mod.signer"
    assert await audit_store.verify(tid) == (10, [])
    row = await audit_store.transfer(tid)
    assert row is not None and (row.stage, row.donor, row.last_seq) == ("COMPLETED", "LT", 10)
    recorded = [e for e in log_capture if e["event"] == "audit event recorded"]
    assert [e["seq"] for e in recorded] == list(range(1, 11))
    assert {(e["transfer_id"], e["workflow_id"], e["activity"]) for e in recorded} == {
        (tid, tid, "record_audit_event")
    }


async def test_refused_update_records_nothing(client: Client, audit_store: AuditStore, task_queue: str) -> None:
    tpt = TransferClient(client, task_queue)
    request = fresh_request()
    async with build_worker(client, audit_store, task_queue):
        await tpt.submit(request)
        await eventually(lambda: stage_visible(client, request.transfer_id, Stage.ALLY_SIGNOFF))
        before = len(await audit_store.history(request.transfer_id))
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await tpt.sign_off(request.transfer_id, LT_SIGNER.model_copy(update={"nation": "DE"}))
        assert "not the donor LT" in str(refused.value.cause)
        with pytest.raises(WorkflowUpdateFailedError) as early:
            await tpt.record_handover(request.transfer_id, Handover(leg="x", from_party="a", to_party="b"))
        assert "accepted only in SHIPMENT" in str(early.value.cause)
        assert len(await audit_store.history(request.transfer_id)) == before
        status = await tpt.status(request.transfer_id)
        assert status.signatures == [] and status.stage == Stage.ALLY_SIGNOFF
        await tpt.handle(request.transfer_id).terminate("test done")
