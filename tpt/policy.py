"""Policy evaluation (DESIGN.md §2 "Policy evaluation"): pure and deterministic, so workflows can call it.

Thresholds, review periods and the short-review group are data: one JSON file per policy version in
`tpt/data/policy/`. `evaluate` never reads the clock (the caller passes `at`, e.g. `workflow.now()`), and
every decision records the policy version and the digest of the request it was made on.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from importlib.resources import files
from types import MappingProxyType

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationInfo, field_validator

from tpt import reference
from tpt.contract import AcquisitionOrigin, NationCode, Text, TransferRequest, UsdAmount, UsmlCategory

DEFAULT_POLICY_VERSION = "aeca-2025.1"
_VERSION = re.compile(r"^[a-z0-9][a-z0-9.-]{0,63}$")


class ApprovalRoute(StrEnum):
    """The State Department office that gives U.S. consent."""

    PM_RSAT = "PM_RSAT"  # FMS- and grant-origin articles
    PM_DDTC = "PM_DDTC"  # DCS-origin articles, retransfer under ITAR §123.9


ROUTES: Mapping[AcquisitionOrigin, ApprovalRoute] = MappingProxyType(
    {
        AcquisitionOrigin.FMS: ApprovalRoute.PM_RSAT,
        AcquisitionOrigin.GRANT: ApprovalRoute.PM_RSAT,
        AcquisitionOrigin.DCS: ApprovalRoute.PM_DDTC,
    }
)


class PolicyStatus(StrEnum):
    IN_FORCE = "in_force"
    PROPOSED = "proposed"  # e.g. a pending bill, for what-if evaluation; never the default


class ReviewGroup(BaseModel):
    """Recipients with the short congressional review period."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nato_members: bool
    nations: list[NationCode]
    citation: str

    def includes(self, code: str) -> bool:
        return code in self.nations or (self.nato_members and reference.is_nato(code))


class PolicyVersion(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str
    title: str
    status: PolicyStatus
    sources: list[str]
    mde_usd: UsdAmount = Field(description="notify when MDE value is at least this")
    total_usd: UsdAmount = Field(description="notify when total value is at least this")
    notification_citation: str
    review_days_default: int = Field(gt=0)
    review_days_group: int = Field(gt=0)
    review_group: ReviewGroup
    eeum_inventory_days: int = Field(gt=0)


class UnknownPolicyVersion(LookupError):
    pass


def policy_versions() -> list[str]:
    """Versions available as data files, sorted."""
    folder = files("tpt") / "data" / "policy"
    return sorted(
        entry.name.removesuffix(".json") for entry in folder.iterdir() if entry.name.endswith(".json")
    )


@functools.cache
def load_policy(version: str = DEFAULT_POLICY_VERSION) -> PolicyVersion:
    """The policy version named `version`; read once per process, then served from the cache."""
    path = files("tpt") / "data" / "policy" / f"{version}.json"
    if not _VERSION.match(version) or not path.is_file():
        raise UnknownPolicyVersion(
            f"unknown policy version '{version}'; known versions: {', '.join(policy_versions())}"
        )
    policy = PolicyVersion.model_validate(json.loads(path.read_text(encoding="utf-8")))
    if policy.version != version:
        raise ValueError(f"policy file {version}.json declares version '{policy.version}'; make them match")
    return policy


class FrameworkAuthorization(BaseModel):
    """An advance, blanket U.S. consent covering named donors, recipients, USML categories and a value cap.

    Validity is by UTC calendar day, both ends inclusive.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    framework_id: str = Field(pattern=r"^[A-Z0-9][A-Z0-9-]{2,63}$")
    name: Text
    donors: list[NationCode] = Field(min_length=1)
    recipients: list[NationCode] = Field(default_factory=lambda: ["UA"], min_length=1)
    usml_categories: list[UsmlCategory] = Field(min_length=1)
    value_cap_usd: UsdAmount
    valid_from: date
    valid_until: date

    @field_validator("valid_until")
    @classmethod
    def _window_not_empty(cls, until: date, info: ValidationInfo) -> date:
        start = info.data.get("valid_from")
        if start is not None and until < start:
            raise ValueError(f"ends ({until}) before it starts ({start}); swap or correct the dates")
        return until

    def gaps(self, request: TransferRequest, on: date) -> list[str]:
        """Why this framework does not cover the request on that day; empty when it does."""
        gaps = []
        if request.donor not in self.donors:
            gaps.append(f"donor {request.donor} not listed")
        if request.recipient not in self.recipients:
            gaps.append(f"recipient {request.recipient} not listed")
        missing = [c for c in request.usml_categories if c not in self.usml_categories]
        if missing:
            gaps.append(f"USML {'/'.join(missing)} not listed")
        if request.total_value_usd > self.value_cap_usd:
            total, cap = format_usd(request.total_value_usd), format_usd(self.value_cap_usd)
            gaps.append(f"total value {total} over cap {cap}")
        if on < self.valid_from:
            gaps.append(f"not valid before {self.valid_from}")
        if on > self.valid_until:
            gaps.append(f"expired after {self.valid_until}")
        return gaps


_FRAMEWORK_LIST = TypeAdapter(list[FrameworkAuthorization])


def parse_frameworks(data: str | bytes) -> list[FrameworkAuthorization]:
    """A JSON list of frameworks (e.g. examples/frameworks.json); ids must be unique."""
    frameworks = _FRAMEWORK_LIST.validate_json(data)
    ids = [f.framework_id for f in frameworks]
    if len(set(ids)) != len(ids):
        raise ValueError(f"framework ids must be unique; got {ids}")
    return frameworks


class PolicyDecision(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    policy_version: str
    request_digest: str
    transfer_id: str
    evaluated_at: datetime
    route: ApprovalRoute
    total_value_usd: Decimal
    mde_value_usd: Decimal
    notification_required: bool
    notification_reasons: list[str]
    review_days: int | None = Field(description="congressional review period when notification is required")
    dsp83_required: bool
    dsp83_reasons: list[str]
    eeum_items: list[str] = Field(description="NSNs whose serials are captured and inventoried")
    eeum_inventory_days: int | None = Field(description="initial inventory due this many days after arrival")
    framework_id: str | None = Field(description="the active framework covering the request, if any")
    fast_track: bool = Field(description="consented under the framework: covered and no notification")
    framework_notes: list[str]


def evaluate(
    request: TransferRequest,
    *,
    at: datetime,
    frameworks: Sequence[FrameworkAuthorization] = (),
    version: str | None = None,
) -> PolicyDecision:
    """The policy decision for `request` at time `at` (timezone-aware) under a policy version."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("at must be timezone-aware (e.g. workflow.now()); a naive time is ambiguous")
    policy = load_policy(version or DEFAULT_POLICY_VERSION)
    route = ROUTES[request.origin]
    reasons = notification_reasons(request, policy)
    framework, notes = covering_framework(request, frameworks, at.astimezone(UTC).date())
    if framework is not None:
        notes.append(_coverage_note(framework, notify=bool(reasons)))
    eeum = _eeum_nsns(request)
    dsp83 = _dsp83_reasons(request, route)
    return PolicyDecision(
        policy_version=policy.version,
        request_digest=request.digest(),
        transfer_id=request.transfer_id,
        evaluated_at=at,
        route=route,
        total_value_usd=request.total_value_usd,
        mde_value_usd=request.mde_value_usd,
        notification_required=bool(reasons),
        notification_reasons=reasons,
        review_days=_review_days(request, policy) if reasons else None,
        dsp83_required=bool(dsp83),
        dsp83_reasons=dsp83,
        eeum_items=eeum,
        eeum_inventory_days=policy.eeum_inventory_days if eeum else None,
        framework_id=framework.framework_id if framework else None,
        fast_track=framework is not None and not reasons,
        framework_notes=notes,
    )


def notification_reasons(request: TransferRequest, policy: PolicyVersion) -> list[str]:
    """Which thresholds the request meets; AECA says "or more", so equality counts."""
    reasons = []
    if request.mde_value_usd >= policy.mde_usd:
        reasons.append(
            f"MDE value {format_usd(request.mde_value_usd)} ≥ {format_usd(policy.mde_usd)} "
            f"({policy.notification_citation})"
        )
    if request.total_value_usd >= policy.total_usd:
        reasons.append(
            f"total value {format_usd(request.total_value_usd)} ≥ {format_usd(policy.total_usd)} "
            f"({policy.notification_citation})"
        )
    return reasons


def covering_framework(
    request: TransferRequest, frameworks: Sequence[FrameworkAuthorization], on: date
) -> tuple[FrameworkAuthorization | None, list[str]]:
    """The first framework (in the order given) covering the request, and a note per framework passed over."""
    notes: list[str] = []
    for framework in frameworks:
        gaps = framework.gaps(request, on)
        if not gaps:
            return framework, notes
        notes.append(f"{framework.framework_id}: {'; '.join(gaps)}")
    return None, notes


def _coverage_note(framework: FrameworkAuthorization, *, notify: bool) -> str:
    if notify:
        return f"{framework.framework_id}: covers the request, but notification is required, so no fast track"
    return f"{framework.framework_id}: covers the request; consent under the framework"


def _review_days(request: TransferRequest, policy: PolicyVersion) -> int:
    if policy.review_group.includes(request.recipient):
        return policy.review_days_group
    return policy.review_days_default


def _dsp83_reasons(request: TransferRequest, route: ApprovalRoute) -> list[str]:
    # ITAR §123.10 applies to the commercial (DCS) route only; FMS/grant articles carry their own assurances.
    if route is not ApprovalRoute.PM_DDTC:
        return []
    reasons = []
    sme = [item.nsn for item in request.items if item.sme]
    if sme:
        reasons.append(f"SME on the DCS route: {', '.join(sme)} (ITAR §123.10)")
    if request.classified:
        reasons.append("classified articles on the DCS route (ITAR §123.10)")
    return reasons


def _eeum_nsns(request: TransferRequest) -> list[str]:
    return list(dict.fromkeys(item.nsn for item in request.items if item.eeum))


def format_usd(amount: Decimal) -> str:
    """`$14,000,000` for whole dollars, `$49,999,999.99` otherwise."""
    return f"${amount:,.0f}" if amount == amount.to_integral_value() else f"${amount:,.2f}"
