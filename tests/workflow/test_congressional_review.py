"""Individual U.S. review and the congressional review period, on the time-skipping server (30 days pass at once)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from tpt.audit.store import AuditStore
from tpt.client import TransferClient
from tpt.contract import TransferRequest
from tpt.messages import Amendment, EmergencyWaiver, JointResolution, TransferStatus, UsDecision, UsOutcome
from tpt.stages import Stage

from ..conftest import eventually
from ..keys import TEST_KEYS
from .conftest import drive_until, ended, event_types, example, running_worker, stages_entered

WAIVER = EmergencyWaiver(official="state.secretary.delegate",
                         justification="An emergency exists requiring the immediate transfer in the national interest")


async def approve_individually(tpt: TransferClient, tid: str) -> None:
    status = await tpt.status(tid)
    assert status.stage is Stage.US_REVIEW and status.policy is not None and not status.policy.fast_track
    await tpt.us_decision(tid, UsDecision(reviewer="pm.rsat.reviewer", office="PM_RSAT", outcome=UsOutcome.APPROVE,
                                          provisos=["no re-transfer without consent"],
                                          request_digest=status.request_digest))


async def review_running(tpt: TransferClient, transfer_id: str) -> TransferStatus | None:
    status = await tpt.status(transfer_id)
    return status if status.congressional_review == "RUNNING" else None


async def into_congressional_review(tpt: TransferClient, request: TransferRequest) -> None:
    await tpt.submit(request)
    await drive_until(tpt, request, stop=Stage.US_REVIEW)
    await approve_individually(tpt, request.transfer_id)


@pytest.mark.parametrize(("recipient", "days"), [("UA", 30), ("PL", 15)])
async def test_review_period_runs_its_days_then_shipment_starts(
    time_env: WorkflowEnvironment, audit_store: AuditStore, task_queue: str, recipient: str, days: int
) -> None:
    tpt = TransferClient(time_env.client, task_queue, TEST_KEYS)
    request = example("patriot-de", recipient=recipient)
    async with running_worker(time_env.client, audit_store, task_queue):
        await tpt.submit(request)
        tid = request.transfer_id
        await drive_until(tpt, request, stop=Stage.US_REVIEW)
        await approve_individually(tpt, tid)
        status = await eventually(lambda: review_running(tpt, tid))
        assert status.stage is Stage.CONGRESSIONAL_REVIEW
        assert status.policy is not None and status.policy.review_days == days
        assert status.congressional_review_ends == status.stage_entered_at + timedelta(days=days)

        await time_env.sleep(timedelta(days=days - 1))
        assert (await tpt.status(tid)).stage is Stage.CONGRESSIONAL_REVIEW
        await time_env.sleep(timedelta(days=1, hours=1))
        status = await tpt.status(tid)
        assert status.stage is Stage.SHIPMENT and status.congressional_review == "ELAPSED"
        await tpt.handle(tid).terminate("test done")

    types = await event_types(audit_store, tid)
    assert types.count("US_DECISION") == 1 and "US_CONSENT_BY_FRAMEWORK" not in types
    assert "CONGRESSIONAL_REVIEW_ELAPSED" in types
    assert await stages_entered(audit_store, tid) == [
        "ALLY_SIGNOFF", "US_REVIEW", "CONGRESSIONAL_REVIEW", "SHIPMENT"]
    decision = next(e for e in await audit_store.history(tid) if e.event_type == "US_DECISION")
    assert (decision.actor, decision.role, decision.payload["provisos"]) == (
        "pm.rsat.reviewer", "PM_RSAT", ["no re-transfer without consent"])


async def test_emergency_waiver_ends_the_review_at_once(
    time_env: WorkflowEnvironment, audit_store: AuditStore, task_queue: str
) -> None:
    tpt = TransferClient(time_env.client, task_queue, TEST_KEYS)
    request = example("patriot-de")
    tid = request.transfer_id
    async with running_worker(time_env.client, audit_store, task_queue):
        await into_congressional_review(tpt, request)
        entered = (await tpt.status(tid)).stage_entered_at
        await tpt.emergency_waiver(tid, WAIVER)
        status = await drive_until(tpt, request, stop=Stage.SHIPMENT)
        assert status.congressional_review == "WAIVED"
        assert status.stage_entered_at - entered < timedelta(days=1)
        await tpt.handle(tid).terminate("test done")
    events = await audit_store.history(tid)
    waiver = next(e for e in events if e.event_type == "EMERGENCY_WAIVER")
    assert waiver.actor == "state.secretary.delegate" and "emergency" in waiver.payload["justification"]
    assert "CONGRESSIONAL_REVIEW_ELAPSED" not in [e.event_type for e in events]


async def test_joint_resolution_blocks_the_transfer(
    time_env: WorkflowEnvironment, audit_store: AuditStore, task_queue: str
) -> None:
    tpt = TransferClient(time_env.client, task_queue, TEST_KEYS)
    request = example("patriot-de")
    tid = request.transfer_id
    async with running_worker(time_env.client, audit_store, task_queue):
        await into_congressional_review(tpt, request)
        await time_env.sleep(timedelta(days=10))
        await tpt.joint_resolution(tid, JointResolution(recorder="state.h.liaison",
                                                        citation="H.J.Res. 1 (119th Congress), enacted"))
        result = await ended(tpt, tid)
    assert result.stage is Stage.BLOCKED and result.congressional_review == "BLOCKED"
    assert "H.J.Res. 1" in (result.outcome_reason or "")
    # The decision and the stage change it causes are the last two events (their order is a race, and the status
    # shows BLOCKED a moment before its STAGE_ENTERED event is appended).
    async def blocked_recorded() -> bool:
        return (await stages_entered(audit_store, tid))[-1] == "BLOCKED"

    await eventually(blocked_recorded)
    assert sorted((await event_types(audit_store, tid))[-2:]) == ["JOINT_RESOLUTION", "STAGE_ENTERED"]


async def test_denial_ends_and_return_sends_back_for_amendment(
    client: Client, audit_store: AuditStore, task_queue: str
) -> None:
    tpt = TransferClient(client, task_queue, TEST_KEYS)
    denied, returned = example("himars-pl"), example("himars-pl", requested_by="pl.requester")
    async with running_worker(client, audit_store, task_queue):
        for request in (denied, returned):
            await tpt.submit(request)
            await drive_until(tpt, request, stop=Stage.US_REVIEW)
        decide = lambda r, outcome: tpt.us_decision(r.transfer_id, UsDecision(  # noqa: E731
            reviewer="pm.rsat.director", office="PM_RSAT", outcome=outcome, request_digest=r.digest(),
            comment="see cable"))
        with pytest.raises(WorkflowUpdateFailedError) as wrong_office:
            await tpt.us_decision(denied.transfer_id, UsDecision(
                reviewer="pm.ddtc.reviewer", office="PM_DDTC", outcome=UsOutcome.APPROVE,
                request_digest=denied.digest()))
        assert "routed to PM_RSAT, not PM_DDTC" in str(wrong_office.value.cause)
        await decide(denied, UsOutcome.DENY)
        assert (await tpt.handle(denied.transfer_id).result()).stage is Stage.DENIED

        status = await decide(returned, UsOutcome.RETURN)
        assert status.awaiting == ["amendment by pl.requester (returned by pm.rsat.director)"]
        with pytest.raises(WorkflowUpdateFailedError) as again:
            await decide(returned, UsOutcome.APPROVE)
        assert "awaiting the requester's amendment" in str(again.value.cause)
        amended = returned.model_copy(update={"end_use": returned.end_use + " (amended per U.S. provisos)"})
        await tpt.amend(returned.transfer_id, Amendment(actor="pl.requester", request=amended, reason="U.S. return"))
        await eventually(lambda: _in(tpt, returned.transfer_id, Stage.ALLY_SIGNOFF))
        await tpt.handle(returned.transfer_id).terminate("test done")
    assert (await stages_entered(audit_store, denied.transfer_id))[-1] == "DENIED"
    assert await stages_entered(audit_store, returned.transfer_id) == [
        "ALLY_SIGNOFF", "US_REVIEW", "ALLY_SIGNOFF"]
    decisions = [e.payload["outcome"] for e in await audit_store.history(returned.transfer_id)
                 if e.event_type == "US_DECISION"]
    assert decisions == ["RETURN"]


async def _in(tpt: TransferClient, transfer_id: str, stage: Stage) -> bool:
    return (await tpt.status(transfer_id)).stage is stage
