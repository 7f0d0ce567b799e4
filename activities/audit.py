"""The audit append activity: every transition the workflow makes lands in Postgres through here."""

from __future__ import annotations

import structlog
from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from tpt.audit.events import NewAuditEvent
from tpt.audit.store import AuditConflict, AuditStore

AUDIT_CONFLICT = "AuditConflict"
log = structlog.get_logger(__name__)


class AuditReceipt(BaseModel):
    seq: int
    hash: str


class AuditActivities:
    """Activities as a class so the store (and its pool) is injected once per worker."""

    def __init__(self, store: AuditStore):
        self.store = store

    @activity.defn(name="record_audit_event")
    async def record_audit_event(self, event: NewAuditEvent) -> AuditReceipt:
        try:
            stored = await self.store.append(event)
        except AuditConflict as err:
            # Retrying cannot help: a person must look at why two bodies share one id.
            raise ApplicationError(str(err), err.differences, type=AUDIT_CONFLICT, non_retryable=True) from err
        log.info("audit event recorded", event_id=stored.event_id, seq=stored.seq, event_type=stored.event_type)
        return AuditReceipt(seq=stored.seq, hash=stored.hash)
