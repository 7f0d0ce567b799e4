"""Recording audit events from workflow code: deterministic ids, one append at a time, never given up."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.audit import AUDIT_CONFLICT, AuditActivities
    from tpt.audit.events import NewAuditEvent, event_id
    from tpt.stages import Stage
    from workflows.task_guard import note_run_coroutine_command

# Appends were local activities, which run inside a workflow task: a worker killed after the append but before
# the task completed left a row the history never knew, and the retried task met it as a conflict. As regular
# activities they are scheduled by the completed task itself, with their input fixed in history.
AUDIT_AS_ACTIVITY = "audit-append-as-activity"

# A Postgres outage makes the transfer wait, never lose an event; only a conflicting body stops retries.
AUDIT_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    maximum_interval=timedelta(seconds=10),
    non_retryable_error_types=[AUDIT_CONFLICT],
)


class AuditTrail:
    def __init__(self, transfer_id: str, ordinals: dict[str, int] | None = None, *, scope: str | None = None):
        """`scope`: a child workflow's (shipment, backfill), in its event ids. A transfer and its children write
        one chain and count their events apart: unscoped, the child's first NEEDS_ATTENTION would carry the id of
        the transfer's first, and the second append of that id would be refused as a conflict. (Only activity
        inputs change, which replay does not compare: no patch needed.)"""
        # Decided once, when the workflow is created, so that no later coroutine can meet the patch first.
        self.via_activity = workflow.patched(AUDIT_AS_ACTIVITY)
        self.transfer_id = transfer_id
        self.id_base = transfer_id if scope is None else f"{transfer_id}/{scope}"
        self.ordinals: dict[str, int] = dict(ordinals or {})
        self.count = 0
        self._lock = asyncio.Lock()
        # A reset run replays the history up to the reset point, then decides afresh: the run it replaced may already
        # have recorded other events under the ids this run would give next (same id, other body: AuditConflict).
        # Core reseeds workflow randomness exactly at the reset point, on every replay alike, with a seed derived from
        # the run the reset created; events decided after that point carry it in their ids. Not a command: histories
        # without a reset replay unchanged.
        self.branch: int | None = None
        workflow.register_random_seed_callback(self._reset_point)

    def _reset_point(self, seed: int) -> None:
        self.branch = seed  # nothing else here: the SDK swallows a callback's exceptions

    def event_id(self, event_type: str, ordinal: int) -> str:
        base = event_id(self.id_base, event_type, ordinal)
        return base if self.branch is None else f"{base}@reset-{self.branch:016x}"

    async def record(self, event_type: str, stage: Stage, actor: str, role: str, payload: dict[str, Any], *,
                     request_digest: str, policy_version: str | None) -> None:
        note_run_coroutine_command()
        ordinal = self.ordinals.get(event_type, 0) + 1
        self.ordinals[event_type] = ordinal
        event = NewAuditEvent(
            event_id=self.event_id(event_type, ordinal), transfer_id=self.transfer_id,
            event_type=event_type, stage=stage, actor=actor, role=role, workflow_time=workflow.now(),
            policy_version=policy_version, request_digest=request_digest, payload=payload,
        )
        # One append at a time, so the chain's order is the order the workflow decided in.
        async with self._lock:
            if self.via_activity:
                await workflow.execute_activity_method(
                    AuditActivities.record_audit_event, event,
                    start_to_close_timeout=timedelta(seconds=15), retry_policy=AUDIT_RETRY,
                    summary=f"audit: {event_type}",
                )
            else:  # histories recorded before the patch replay as they ran
                await workflow.execute_local_activity_method(
                    AuditActivities.record_audit_event, event,
                    start_to_close_timeout=timedelta(seconds=15), retry_policy=AUDIT_RETRY,
                    summary=f"audit: {event_type}",
                )
        self.count += 1
