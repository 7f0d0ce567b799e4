"""Ally sign-off: quorum, veto, separation of duties, digest binding, amendment, expiry."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from tpt.audit.store import AuditStore
from tpt.client import TransferClient
from tpt.messages import Amendment, Deadlines, SignOff
from tpt.stages import Stage

from ..conftest import eventually
from ..keys import TEST_KEYS
from .conftest import ended, event_types, example, running_worker, stages_entered


def sign(signer: str, role: str, digest: str, approve: bool = True, nation: str = "DE") -> SignOff:
    return SignOff(signer=signer, nation=nation, role=role, approve=approve, request_digest=digest,
                   comment="" if approve else "stock needed for national defence")


async def in_signoff(tpt: TransferClient, tid: str) -> bool:
    return (await tpt.status(tid)).stage is Stage.ALLY_SIGNOFF


async def accepted_updates(client: Client, tid: str) -> int:
    history = await client.get_workflow_handle(tid).fetch_history()
    return sum(1 for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)


async def test_quorum_then_veto_rejects_the_transfer(client: Client, audit_store: AuditStore, task_queue: str) -> None:
    tpt = TransferClient(client, task_queue, TEST_KEYS)
    request = example("patriot-de")  # DE: two seats (MOD, BAFA), quorum 2
    tid, digest = request.transfer_id, request.digest()
    async with running_worker(client, audit_store, task_queue):
        await tpt.submit(request)
        status = await tpt.sign_off(tid, sign("de.bmvg.signer", "MOD", digest))
        assert status.stage is Stage.ALLY_SIGNOFF and status.quorum == 2
        assert "BAFA" in status.awaiting[0]
        await tpt.sign_off(tid, sign("de.bafa.signer", "BAFA", digest, approve=False))
        result = await tpt.handle(tid).result()
    assert result.stage is Stage.REJECTED and "de.bafa.signer" in (result.outcome_reason or "")
    events = await audit_store.history(tid)
    assert [(e.event_type, e.actor, e.payload.get("approve")) for e in events if e.event_type == "SIGN_OFF"] == [
        ("SIGN_OFF", "de.bmvg.signer", True), ("SIGN_OFF", "de.bafa.signer", False)]
    assert await stages_entered(audit_store, tid) == ["ALLY_SIGNOFF", "REJECTED"]


@pytest.mark.parametrize(("decision", "reason"), [
    (lambda d: sign("pl.mon.signer", "MOD", d, nation="PL"), "not the donor DE"),
    (lambda d: sign("de.requester", "MOD", d), "cannot sign it off"),
    (lambda d: sign("de.bafa.signer", "MOD", d), "holds no MOD seat"),
    (lambda d: sign("de.bmvg.signer", "MOD", d), "already signed"),
    (lambda d: sign("de.bafa.signer", "BAFA", "0" * 64), "current version"),
])
async def test_refused_sign_offs_record_nothing(
    client: Client, audit_store: AuditStore, task_queue: str, decision, reason: str  # type: ignore[no-untyped-def]
) -> None:
    tpt = TransferClient(client, task_queue, TEST_KEYS)
    request = example("patriot-de", requested_by="de.requester")
    tid, digest = request.transfer_id, request.digest()
    async with running_worker(client, audit_store, task_queue):
        await tpt.submit(request)
        await eventually(lambda: in_signoff(tpt, tid))
        await tpt.sign_off(tid, sign("de.bmvg.signer", "MOD", digest))
        before_events, before_updates = await event_types(audit_store, tid), await accepted_updates(client, tid)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await tpt.sign_off(tid, decision(digest))
        assert reason in str(refused.value.cause)
        assert await event_types(audit_store, tid) == before_events
        assert await accepted_updates(client, tid) == before_updates  # the validator kept it out of history
        assert len((await tpt.status(tid)).signatures) == 1
        await tpt.handle(tid).terminate("test done")


async def test_amendment_voids_earlier_sign_offs(client: Client, audit_store: AuditStore, task_queue: str) -> None:
    tpt = TransferClient(client, task_queue, TEST_KEYS)
    request = example("patriot-de", requested_by="de.requester")
    tid, digest = request.transfer_id, request.digest()
    fewer = request.model_copy(update={"items": [request.items[0].model_copy(update={"quantity": 4})]})
    async with running_worker(client, audit_store, task_queue):
        await tpt.submit(request)
        await tpt.sign_off(tid, sign("de.bmvg.signer", "MOD", digest))
        with pytest.raises(WorkflowUpdateFailedError) as not_requester:
            await tpt.amend(tid, Amendment(actor="de.bmvg.signer", request=fewer, reason="fewer"))
        assert "only the requester" in str(not_requester.value.cause)
        status = await tpt.amend(tid, Amendment(actor="de.requester", request=fewer, reason="fewer available"))
        assert status.request_version == 2 and status.signatures == []
        await eventually(lambda: in_signoff(tpt, tid))
        with pytest.raises(WorkflowUpdateFailedError) as stale:  # a signature over version 1 no longer counts
            await tpt.sign_off(tid, sign("de.bafa.signer", "BAFA", digest))
        assert "current version (v2)" in str(stale.value.cause)
        new = fewer.digest()
        await tpt.sign_off(tid, sign("de.bmvg.signer", "MOD", new))
        status = await tpt.sign_off(tid, sign("de.bafa.signer", "BAFA", new))
        await eventually(lambda: _stage_is(tpt, tid, Stage.US_REVIEW))
        await tpt.handle(tid).terminate("test done")
    events = await audit_store.history(tid)
    amended = next(e for e in events if e.event_type == "REQUEST_AMENDED")
    assert (amended.actor, amended.payload["signoffs_voided"], amended.payload["version"]) == ("de.requester", 1, 2)
    assert amended.request_digest == fewer.digest()
    signoffs = [(e.actor, e.request_digest) for e in events if e.event_type == "SIGN_OFF"]
    assert signoffs == [("de.bmvg.signer", digest), ("de.bmvg.signer", new), ("de.bafa.signer", new)]
    assert await stages_entered(audit_store, tid) == ["ALLY_SIGNOFF", "ALLY_SIGNOFF", "US_REVIEW"]


async def _stage_is(tpt: TransferClient, tid: str, stage: Stage) -> bool:
    return (await tpt.status(tid)).stage is stage


async def test_sign_off_reminder_then_expiry(
    time_env: WorkflowEnvironment, audit_store: AuditStore, task_queue: str
) -> None:
    tpt = TransferClient(time_env.client, task_queue, TEST_KEYS)
    request = example("patriot-de")
    deadlines = Deadlines(signoff_reminder=timedelta(days=5), signoff_expiry=timedelta(days=30))
    async with running_worker(time_env.client, audit_store, task_queue):
        await tpt.submit(request, deadlines)
        await tpt.sign_off(request.transfer_id, sign("de.bmvg.signer", "MOD", request.digest()))
        await time_env.sleep(timedelta(days=6))
        assert "SIGNOFF_REMINDER" in await event_types(audit_store, request.transfer_id)
        assert (await tpt.status(request.transfer_id)).stage is Stage.ALLY_SIGNOFF
        await time_env.sleep(timedelta(days=25))
        result = await ended(tpt, request.transfer_id)
    assert result.stage is Stage.EXPIRED and "30 days" in (result.outcome_reason or "")
    types = await event_types(audit_store, request.transfer_id)
    assert types == ["TRANSFER_REQUESTED", "STAGE_ENTERED", "SIGN_OFF", "SIGNOFF_REMINDER", "STAGE_ENTERED"]
    last = (await audit_store.history(request.transfer_id))[-1]
    assert last.payload["to"] == "EXPIRED"
    assert last.workflow_time - (await audit_store.history(request.transfer_id))[1].workflow_time >= timedelta(days=30)
