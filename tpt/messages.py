"""Decisions people send to a running transfer (Temporal updates) and the status it answers with (query)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from tpt.stages import Stage


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SignOff(_Message):
    """A donor signer's approval or rejection (a rejection is a veto)."""

    signer: str = Field(min_length=1)
    nation: str = Field(min_length=2, max_length=2)
    role: str = Field(min_length=1)
    approve: bool
    comment: str = ""


class UsOutcome(StrEnum):
    APPROVE = "APPROVE"
    DENY = "DENY"
    RETURN = "RETURN"


class UsDecision(_Message):
    reviewer: str = Field(min_length=1)
    office: str = Field(min_length=1)
    outcome: UsOutcome
    provisos: list[str] = Field(default_factory=list)
    comment: str = ""


class Handover(_Message):
    """One custody handover, recorded by the party handing over."""

    leg: str = Field(min_length=1)
    from_party: str = Field(min_length=1)
    to_party: str = Field(min_length=1)
    serials: list[str] = Field(default_factory=list)
    delivered: bool = False


class BackfillDelivery(_Message):
    reporter: str = Field(min_length=1)
    quantity: int = Field(gt=0)
    reference: str = ""


class Withdrawal(_Message):
    actor: str = Field(min_length=1)
    reason: str = Field(min_length=1)


class Signature(_Message):
    signer: str
    nation: str
    role: str
    approve: bool
    at: datetime


class TransferStatus(_Message):
    transfer_id: str
    stage: Stage
    stage_entered_at: datetime
    donor: str
    recipient: str
    signatures: list[Signature] = Field(default_factory=list)
    awaiting: list[str] = Field(default_factory=list)
    us_decision: UsOutcome | None = None
    handovers: list[Handover] = Field(default_factory=list)
    backfill_delivered: int = 0
    backfill_required: int = 0
    request_digest: str
    audit_events: int = 0
