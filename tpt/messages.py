"""What crosses the workflow boundary: its input, the decisions people send (updates), and its status (query)."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from tpt.contract import Serial, TransferRequest
from tpt.policy import FrameworkAuthorization, PolicyDecision
from tpt.registry import Registry
from tpt.signing import DecisionSignature, SignerSnapshot
from tpt.stages import Stage
from tpt.text import LIST_MAX, Name, Note

MAX_SERIALS = 20_000  # per handover or inventory: 64-character serials stay well inside a 2 MB payload
Digest = Annotated[str, Field(min_length=64, max_length=64, pattern="^[0-9a-f]{64}$")]


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

class _Decision(_Message):
    """A person's decision: it may carry (and, for transfers that require it, must carry) their signature over
    its fields and the context it was made in (tpt/signing.py)."""

    signature: DecisionSignature | None = Field(None, description="the signer's signature (tpt.signing.Signer)")

    def signed_body(self) -> dict[str, Any]:
        """The fields the signature covers: all but the signature itself."""
        return self.model_dump(mode="json", exclude={"signature"})


class SignOff(_Decision):
    """A donor signer's approval or rejection, bound to the request version the signer read."""

    signer: Name
    nation: str = Field(min_length=2, max_length=2)
    role: Name
    approve: bool
    request_digest: Digest
    comment: Note = ""


class Amendment(_Decision):
    actor: Name
    request: TransferRequest
    reason: Note = Field(min_length=1)

    def signed_body(self) -> dict[str, Any]:
        # The new request by its digest: the audit event keeps that digest, not the request itself.
        return {"actor": self.actor, "reason": self.reason, "request_digest": self.request.digest()}


class UsOutcome(StrEnum):
    APPROVE = "APPROVE"
    DENY = "DENY"
    RETURN = "RETURN"


class UsDecision(_Decision):
    reviewer: Name
    office: Name
    outcome: UsOutcome
    request_digest: Digest
    provisos: list[Annotated[Note, Field(min_length=1)]] = Field(default_factory=list, max_length=LIST_MAX)
    comment: Note = ""


class EmergencyWaiver(_Decision):
    official: Name
    justification: Note = Field(min_length=20, description="the written emergency justification")


class JointResolution(_Decision):
    recorder: Name
    citation: Note = Field(min_length=1, description="e.g. H.J.Res. number and date of enactment")


class Withdrawal(_Decision):
    actor: Name
    reason: Note = Field(min_length=1)


class Handover(_Message):
    """One custody handover, recorded by the party handing over."""

    leg: Name
    from_party: Name
    to_party: Name
    serials: list[Serial] = Field(default_factory=list, max_length=MAX_SERIALS)


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
    reporter: Name
    step: BackfillStep
    mechanism: BackfillMechanism | None = None
    reference: Note = ""
    quantity: int = Field(0, ge=0)


class OpsAction(_Decision):
    """An operator's retry or skip of a stuck step; always audited with who and why."""

    operator: Name
    reason: Note = Field(min_length=3)


class StuckStep(_Message):
    step: str
    reason: str
    irreversible: bool
    since: datetime


class EeumInventory(_Decision):
    inspector: Name
    serials: list[Serial] = Field(max_length=MAX_SERIALS)


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
    signatures_required: bool = False
    signers_loaded_at: datetime | None = None


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
    signers: SignerSnapshot | None = Field(None, description="the parent's signer registry, for operators' actions")


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
