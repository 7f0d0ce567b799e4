"""Current state of a transfer folded from its audit events: the same code serves appends and rebuilds."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict

from tpt.audit.events import AuditEvent


class TransferRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    transfer_id: str
    stage: str
    donor: str | None = None
    recipient: str | None = None
    total_value_usd: Decimal | None = None
    priority: str | None = None
    route: str | None = None
    needs_attention: bool = False
    blocked_reason: str | None = None
    request_digest: str | None = None
    policy_version: str | None = None
    created_at: datetime
    stage_entered_at: datetime
    updated_at: datetime
    last_seq: int
    head_hash: str


# Payload keys that, when an event carries them, set the projection column of the same name.
_CARRIED = ("donor", "recipient", "total_value_usd", "priority", "route", "needs_attention", "blocked_reason")


def apply(row: TransferRow | None, event: AuditEvent) -> TransferRow:
    """The projection after one more event."""
    at = event.workflow_time
    base: dict[str, Any] = (
        row.model_dump() if row else {"transfer_id": event.transfer_id, "created_at": at, "stage_entered_at": at}
    )
    if row is not None and row.stage != event.stage.value:
        base["stage_entered_at"] = at
    base.update(
        stage=event.stage.value,
        updated_at=at,
        last_seq=event.seq,
        head_hash=event.hash,
        request_digest=event.request_digest or base.get("request_digest"),
        policy_version=event.policy_version or base.get("policy_version"),
    )
    base.update({key: event.payload[key] for key in _CARRIED if key in event.payload})
    return TransferRow.model_validate(base)


def fold(events: list[AuditEvent]) -> TransferRow | None:
    row: TransferRow | None = None
    for event in events:
        row = apply(row, event)
    return row
