"""Shipment: custody handovers with EEUM serial checks, SCO notification, and withdrawal before/after departure."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import Client, WorkflowUpdateFailedError

from tpt.audit.store import AuditStore
from tpt.client import TransferClient
from tpt.messages import Handover, Withdrawal
from tpt.stages import Stage

from ..conftest import eventually
from ..keys import TEST_KEYS
from .conftest import RecordingNotifier, drive_until, event_types, example, running_worker, stages_entered

SERIALS = ["JAV-LT-0001", "JAV-LT-0002", "JAV-LT-0003", "JAV-LT-0004", "JAV-LT-0005", "JAV-LT-0006"]


async def shipment_recorded(store: AuditStore, transfer_id: str) -> bool:
    return "SHIPMENT" in [e.payload.get("to") for e in await store.history(transfer_id)]


def leg1(serials: list[str]) -> Handover:
    return Handover(leg="depot-to-hub", from_party="LT depot", to_party="Rzeszów-Jasionka hub", serials=serials)


async def test_eeum_serial_mismatch_at_handover_is_refused(
    client: Client, audit_store: AuditStore, task_queue: str
) -> None:
    tpt = TransferClient(client, task_queue, TEST_KEYS)
    request = example("javelin-lt")
    serials = [s for item in request.items for s in item.serials]
    tid = request.transfer_id
    async with running_worker(client, audit_store, task_queue):
        await tpt.submit(request)
        await drive_until(tpt, request, stop=Stage.SHIPMENT)
        await eventually(lambda: shipment_recorded(audit_store, tid))
        before = await event_types(audit_store, tid)
        wrong = [*serials[:-1], "JAV-FORGED-9"]
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await tpt.record_handover(tid, leg1(wrong))
        assert f"missing ['{serials[-1]}']" in str(refused.value.cause)
        assert "JAV-FORGED-9" in str(refused.value.cause)
        with pytest.raises(WorkflowUpdateFailedError) as impostor:
            await tpt.record_handover(tid, leg1(serials).model_copy(update={"from_party": "someone else"}))
        assert "only the current custodian" in str(impostor.value.cause)
        assert await event_types(audit_store, tid) == before
        shipment = await tpt.record_handover(tid, leg1(serials))
        assert shipment.custodian == "Rzeszów-Jasionka hub"
        await tpt.handle(tid).terminate("test done")
    handover = (await audit_store.history(tid))[-1]
    assert (handover.event_type, handover.actor, handover.payload["serials"]) == ("HANDOVER", "LT depot", serials)


async def test_withdrawal_before_departure_ends_the_transfer(
    client: Client, audit_store: AuditStore, task_queue: str
) -> None:
    tpt = TransferClient(client, task_queue, TEST_KEYS)
    request = example("javelin-lt")
    async with running_worker(client, audit_store, task_queue):
        await tpt.submit(request)
        await drive_until(tpt, request, stop=Stage.SHIPMENT)
        await tpt.withdraw(request.transfer_id, Withdrawal(actor=request.requested_by, reason="stock redeployed"))
        result = await tpt.handle(request.transfer_id).result()
    assert result.stage is Stage.WITHDRAWN and "stock redeployed" in (result.outcome_reason or "")
    assert (await stages_entered(audit_store, request.transfer_id))[-2:] == ["SHIPMENT", "WITHDRAWN"]
    withdrawal = next(e for e in await audit_store.history(request.transfer_id) if e.event_type == "WITHDRAWAL")
    assert withdrawal.actor == request.requested_by


async def test_withdrawal_after_a_leg_has_left_is_refused_and_delivery_notifies_scos(
    client: Client, audit_store: AuditStore, task_queue: str
) -> None:
    tpt, notifier = TransferClient(client, task_queue, TEST_KEYS), RecordingNotifier()
    request = example("javelin-lt")
    serials = [s for item in request.items for s in item.serials]
    tid = request.transfer_id
    async with running_worker(client, audit_store, task_queue, notifier):
        await tpt.submit(request)
        await drive_until(tpt, request, stop=Stage.SHIPMENT)
        await tpt.record_handover(tid, leg1(serials))
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await tpt.withdraw(tid, Withdrawal(actor=request.requested_by, reason="too late"))
        assert "shipment is irreversible" in str(refused.value.cause)
        status = await drive_until(tpt, request, stop=Stage.BACKFILL)
        assert status.delivered_at is not None and status.eeum_inventory_due is not None
        assert (status.eeum_inventory_due - status.delivered_at).days == 90
        await tpt.handle(tid).terminate("test done")
    assert [(office, n.eeum_serials) for office, n in notifier.sent] == [("SCO-LT", serials), ("SCO-UA", serials)]
    types = await event_types(audit_store, tid)
    assert "WITHDRAWAL" not in types
    assert types.count("HANDOVER") == 3 and types.index("SHIPMENT_DELIVERED") < types.index("SCO_NOTIFIED")
    by_workflow = {e.event_type: e.event_id.split(":")[0] for e in await audit_store.history(tid)}
    assert (by_workflow["TRANSFER_REQUESTED"], by_workflow["HANDOVER"]) == (tid, f"{tid}/shipment")


async def test_the_same_handover_sent_twice_at_once_counts_once(
    client: Client, audit_store: AuditStore, task_queue: str
) -> None:
    """Validators of updates delivered together all run before any handler: handlers must check again."""
    tpt = TransferClient(client, task_queue, TEST_KEYS)
    request = example("javelin-lt")
    serials = [s for item in request.items for s in item.serials]
    tid = request.transfer_id
    async with running_worker(client, audit_store, task_queue):
        await tpt.submit(request)
        await drive_until(tpt, request, stop=Stage.SHIPMENT)
        await tpt.record_handover(tid, leg1(serials))  # the child is up; its next leg is hub-to-border
        leg2 = Handover(leg="hub-to-border", from_party="Rzeszów-Jasionka hub", to_party="UA border",
                        serials=serials)
    # No worker while they are sent: all four reach the next worker in one activation, as after a crash.
    sent = [asyncio.create_task(tpt.record_handover(tid, leg2)) for _ in range(4)]
    await asyncio.sleep(2)
    async with running_worker(client, audit_store, task_queue):
        results = await asyncio.gather(*sent, return_exceptions=True)
        await tpt.handle(tid).terminate("test done")
    print("RESULTS", results)
    accepted = [r for r in results if not isinstance(r, BaseException)]
    assert len(accepted) == 1, results
    assert all("next leg is 'border-to-unit'" in str(getattr(r, "cause", r)) or "next leg" in str(r)
               for r in results if isinstance(r, BaseException))
    assert (await event_types(audit_store, tid)).count("HANDOVER") == 2
