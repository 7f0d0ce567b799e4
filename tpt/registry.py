"""Who may decide: each donor's sign-off seats and quorum, the U.S. reviewers of each office.

Reference data read by an activity when a transfer starts, so the workflow's synchronous validators can check
it from workflow state (DESIGN.md §3 "Messages").
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from pydantic import BaseModel, ConfigDict, Field


class SignoffRules(BaseModel):
    """n-of-m: `quorum` distinct seats (roles) of the donor must approve; any rejection is a veto."""

    model_config = ConfigDict(frozen=True)

    nation: str
    quorum: int = Field(gt=0)
    seats: dict[str, list[str]]

    def seat_of(self, signer: str) -> str | None:
        return next((role for role, people in self.seats.items() if signer in people), None)


class Registry(BaseModel):
    model_config = ConfigDict(frozen=True)

    signoff: SignoffRules
    reviewers: dict[str, list[str]]
    waiver_officials: list[str]
    congressional_recorders: list[str]


@cache
def _raw() -> dict[str, object]:
    return json.loads(resources.files("tpt").joinpath("data/registry.json").read_text(encoding="utf-8"))


def for_donor(nation: str) -> Registry:
    raw = _raw()
    known: dict[str, dict[str, object]] = raw["signoff"]  # type: ignore[assignment]
    rules = known.get(nation) or _default_rules(raw["default_signoff"], nation)  # type: ignore[arg-type]
    return Registry.model_validate({
        "signoff": {"nation": nation, **rules}, "reviewers": raw["reviewers"],
        "waiver_officials": raw["waiver_officials"], "congressional_recorders": raw["congressional_recorders"],
    })


def _default_rules(template: dict[str, object], nation: str) -> dict[str, object]:
    seats: dict[str, list[str]] = template["seats"]  # type: ignore[assignment]
    return {"quorum": template["quorum"],
            "seats": {role: [p.format(nation=nation.lower()) for p in people] for role, people in seats.items()}}
