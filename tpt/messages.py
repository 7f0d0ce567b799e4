"""What crosses the workflow boundary: its input, the decisions people send (updates), and its status (query)."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from tpt.contract import TransferRequest
from tpt.policy import FrameworkAuthorization, PolicyDecision
from tpt.registry import Registry
from tpt.stages import Stage


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- configuration ---------------------------------------------------------------------------------------

class Deadlines(_Message):
    """Durations of the durable timers; defaults are the real ones, tests shorten them."""

    signoff_reminder: timedelta = timedelta(days=5)
    signoff_expiry: timedelta = timedelta(days=30)
    us_review_reminder: timedelta = timedelta(days=10)
    backfill_reminder: timedelta = timedelta(days=90)
    calendar_day: timedelta = timedelta(days=1)  # the unit of the congressional period and the EEUM clock


class StepRetry(_Message):
    """Bounded retries for side-effect steps: when they run out, the transfer waits for an operator."""

    attempts: int = Field(5, ge=1)
    first_backoff: timedelta = timedelta(seconds=1)
    max_backoff: timedelta = timedelta(seconds=30)
    timeout: timedelta = timedelta(seconds=30)


class ReferenceData(_Message):
    registry: Registry
    frameworks: list[FrameworkAuthorization]


class TransferInput(_Message):
    request: TransferRequest
    deadlines: Deadlines = Deadlines()
    policy_version: str | None = None
    step_retry: StepRetry = StepRetry()


# --- decisions (updates) ---------------------------------------------------------------------------------

class SignOff(_Message):
    """A donor signer's approval or rejection, bound to the request version the signer read."""

    signer: str = Field(min_length=1)
    nation: str = Field(min_length=2, max_length=2)
    role: str = Field(min_length=1)
    approve: bool
    request_digest: str = Field(min_length=64, max_length=64)
    comment: str = ""


class Amendment(_Message):
    actor: str = Field(min_length=1)
    request: TransferRequest
    reason: str = Field(min_length=1)


class UsOutcome(StrEnum):
    APPROVE = "APPROVE"
    DENY = "DENY"
    RETURN = "RETURN"


class UsDecision(_Message):
    reviewer: str = Field(min_length=1)
    office: str = Field(min_length=1)
    outcome: UsOutcome
    request_digest: str = Field(min_length=64, max_length=64)
    provisos: list[str] = Field(default_factory=list)
    comment: str = ""


class EmergencyWaiver(_Message):
    official: str = Field(min_length=1)
    justification: str = Field(min_length=20, description="the written emergency justification")


class JointResolution(_Message):
    recorder: str = Field(min_length=1)
    citation: str = Field(min_length=1, description="e.g. H.J.Res. number and date of enactment")


class Withdrawal(_Message):
    actor: str = Field(min_length=1)
    reason: str = Field(min_length=1)


class Handover(_Message):
    """One custody handover, recorded by the party handing over."""

    leg: str = Field(min_length=1)
    from_party: str = Field(min_length=1)
    to_party: str = Field(min_length=1)
    serials: list[str] = Field(default_factory=list)


class BackfillStep(StrEnum):
    MECHANISM = "MECHANISM"
    LETTER_OF_REQUEST = "LETTER_OF_REQUEST"
    LETTER_OF_OFFER = "LETTER_OF_OFFER"
    DELIVERY = "DELIVERY"


class BackfillMechanism(StrEnum):
    FMS_CASE = "FMS_CASE"
    DCS_PURCHASE = "DCS_PURCHASE"
    FMF_FUNDED = "FMF_FUNDED"
    NATO_FUNDED = "NATO_FUNDED"


class BackfillRecord(_Message):
    reporter: str = Field(min_length=1)
    step: BackfillStep
    mechanism: BackfillMechanism | None = None
    reference: str = ""
    quantity: int = Field(0, ge=0)


class OpsAction(_Message):
    """An operator's retry or skip of a stuck step; always audited with who and why."""

    operator: str = Field(min_length=1)
    reason: str = Field(min_length=3)


class StuckStep(_Message):
    step: str
    reason: str
    irreversible: bool
    since: datetime


class EeumInventory(_Message):
    inspector: str = Field(min_length=1)
    serials: list[str]


# --- status (query) --------------------------------------------------------------------------------------

class Signature(_Message):
    signer: str
    role: str
    approve: bool
    at: datetime
    comment: str = ""


class TransferStatus(_Message):
    transfer_id: str
    stage: Stage
    stage_entered_at: datetime
    donor: str
    recipient: str
    request_version: int
    request_digest: str
    policy: PolicyDecision | None = None
    quorum: int = 0
    signatures: list[Signature] = Field(default_factory=list)
    awaiting: list[str] = Field(default_factory=list)
    us_decision: UsDecision | None = None
    consent_by_framework: str | None = None
    congressional_review: str = "NOT_REQUIRED"
    congressional_review_ends: datetime | None = None
    shipment_departed: bool = False
    delivered_at: datetime | None = None
    eeum_inventory_due: datetime | None = None
    eeum_inventory_done: bool = False
    backfill_replaced: int = 0
    backfill_required: int = 0
    needs_attention: bool = False
    blocked_reason: str | None = None
    outcome_reason: str | None = None
    audit_events: int = 0


class ShipmentInput(_Message):
    transfer_id: str
    donor: str
    recipient: str
    legs: list[str]
    first_custodian: str
    eeum_serials: list[str]
    request_digest: str
    policy_version: str
    step_retry: StepRetry = StepRetry()


class ShipmentStatus(_Message):
    legs: list[str]
    handovers: list[Handover]
    custodian: str
    delivered_at: datetime | None = None
    audit_events: int = 0

    @property
    def next_leg(self) -> str | None:
        return self.legs[len(self.handovers)] if len(self.handovers) < len(self.legs) else None


class BackfillInput(_Message):
    transfer_id: str
    donor: str
    quantity_required: int
    request_digest: str
    policy_version: str
    reminder: timedelta
    history_limit: int = Field(2000, description="continue-as-new after this many history events")
    carried: BackfillStatus | None = Field(None, description="state carried across continue-as-new")
    audit_ordinals: dict[str, int] = Field(default_factory=dict)


class BackfillStatus(_Message):
    mechanism: BackfillMechanism | None = None
    letter_of_request: str | None = None
    letter_of_offer: str | None = None
    replaced: int = 0
    required: int
    records: int = 0
    runs: int = 1
    audit_events: int = 0
