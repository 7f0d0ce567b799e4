"""The fast-track path on the real dev server: a framework-covered request below the notification thresholds."""

from __future__ import annotations

from temporalio.client import Client

from tpt import search_attributes as sa
from tpt.audit.store import AuditStore
from tpt.client import TransferClient
from tpt.stages import Stage

from ..conftest import eventually
from ..keys import TEST_KEYS
from .conftest import RecordingNotifier, drive_until, example, running_worker, stages_entered


async def test_framework_covered_transfer_is_consented_automatically(
    client: Client, audit_store: AuditStore, task_queue: str, log_capture: list[dict[str, object]]
) -> None:
    tpt, notifier = TransferClient(client, task_queue, TEST_KEYS), RecordingNotifier()
    request = example("javelin-lt")
    async with running_worker(client, audit_store, task_queue, notifier):
        await tpt.submit(request)
        status = await drive_until(tpt, request)
        result = await tpt.handle(request.transfer_id).result()

    assert status.stage is Stage.COMPLETED and result.stage is Stage.COMPLETED
    assert result.consent_by_framework == "NATO-TPT-PILOT-2026" and result.us_decision is None
    assert result.policy is not None and result.policy.fast_track and not result.policy.notification_required
    tid = request.transfer_id
    assert await stages_entered(audit_store, tid) == [
        "ALLY_SIGNOFF", "US_REVIEW", "SHIPMENT", "BACKFILL", "COMPLETED"]
    events = await audit_store.history(tid)
    consent = next(e for e in events if e.event_type == "US_CONSENT_BY_FRAMEWORK")
    assert (consent.actor, consent.role) == ("framework:NATO-TPT-PILOT-2026", "FRAMEWORK")
    assert [e.role for e in events if e.event_type == "SIGN_OFF"] == ["MOD", "MFA"]
    assert [e.event_type for e in events].count("HANDOVER") == 3
    assert {e.policy_version for e in events} == {"aeca-2025.1"}
    assert {e.request_digest for e in events} == {request.digest()}
    assert [office for office, _ in notifier.sent] == ["SCO-LT", "SCO-UA"]
    assert await audit_store.verify(tid) == (len(events), [])
    row = await audit_store.transfer(tid)
    assert row is not None and (row.stage, row.route, row.donor) == ("COMPLETED", "PM_RSAT", "LT")

    query = f'WorkflowId = "{tid}" AND {sa.TRANSFER_STAGE.name} = "COMPLETED" AND {sa.CONGRESSIONAL_REVIEW.name} = ' \
            f'"NOT_REQUIRED" AND {sa.APPROVAL_ROUTE.name} = "PM_RSAT"'
    await eventually(lambda: _count(client, query))
    recorded = [e for e in log_capture if e["event"] == "audit event recorded"]
    assert {(e["transfer_id"], e["activity"]) for e in recorded} == {(tid, "record_audit_event")}
    assert len(recorded) == len(events)


async def _count(client: Client, query: str) -> bool:
    return (await client.count_workflows(query)).count == 1
