"""Audit event models: what the workflow asks to record, and what the store keeps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from tpt.stages import Stage

GENESIS_HASH = "0" * 64


def event_id(transfer_id: str, event_type: str, ordinal: int) -> str:
    """Deterministic id: a retried append of the same event always carries the same id."""
    return f"{transfer_id}:{event_type}:{ordinal}"


class NewAuditEvent(BaseModel):
    """An event as the workflow produces it; the store adds sequence, recording time and hashes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str
    transfer_id: str
    event_type: str
    stage: Stage
    actor: str = Field(min_length=1)
    role: str = Field(min_length=1)
    workflow_time: AwareDatetime
    policy_version: str | None = None
    request_digest: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)

    @field_validator("workflow_time")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        # One spelling of each instant, so the hash survives a round trip through Postgres.
        return value.astimezone(UTC)

    def body(self) -> dict[str, Any]:
        """The fields an idempotent retry must repeat exactly."""
        return self.model_dump(mode="json")


class AuditEvent(NewAuditEvent):
    seq: int
    recorded_at: AwareDatetime
    prev_hash: str
    hash: str

    @field_validator("recorded_at")
    @classmethod
    def _recorded_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    def new_part(self) -> NewAuditEvent:
        return NewAuditEvent.model_validate(self.model_dump(include=set(NewAuditEvent.model_fields)))
