"""The example requests in examples/ are valid and lead to the decision each one is there to show."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import pytest

from tpt.contract import TransferRequest
from tpt.policy import ApprovalRoute, FrameworkAuthorization, evaluate, parse_frameworks

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # inside the pilot framework's validity window
PILOT = "NATO-TPT-PILOT-2026"


class Intent(NamedTuple):
    route: ApprovalRoute
    notification_required: bool
    review_days: int | None
    dsp83_required: bool
    eeum_items: int
    framework_id: str | None
    fast_track: bool


INTENDED = {
    # Above both AECA §3(d) thresholds: individual review, then a 30-day congressional review (UA).
    "patriot-de.json": Intent(ApprovalRoute.PM_RSAT, True, 30, False, 0, None, False),
    # Below the thresholds but above the framework's $10M cap: individual review, no notification.
    "himars-pl.json": Intent(ApprovalRoute.PM_RSAT, False, None, False, 0, None, False),
    # Small, EEUM with serials, inside the framework: consented automatically.
    "javelin-lt.json": Intent(ApprovalRoute.PM_RSAT, False, None, False, 1, PILOT, True),
    # DCS origin: PM/DDTC, SME so DSP-83, EEUM night-vision devices, inside the framework.
    "nvg-nl-dcs.json": Intent(ApprovalRoute.PM_DDTC, False, None, True, 1, PILOT, True),
}


def load(name: str) -> TransferRequest:
    return TransferRequest.model_validate_json((EXAMPLES / name).read_bytes())


@pytest.fixture(scope="module")
def frameworks() -> list[FrameworkAuthorization]:
    return parse_frameworks((EXAMPLES / "frameworks.json").read_bytes())


def test_every_example_request_has_an_intent() -> None:
    found = {p.name for p in EXAMPLES.glob("*.json")} - {"frameworks.json"}
    assert found == set(INTENDED)


@pytest.mark.parametrize("name", sorted(INTENDED))
def test_example_decision_is_the_intended_one(name: str, frameworks: list[FrameworkAuthorization]) -> None:
    decision = evaluate(load(name), at=AT, frameworks=frameworks)
    found = Intent(
        decision.route,
        decision.notification_required,
        decision.review_days,
        decision.dsp83_required,
        len(decision.eeum_items),
        decision.framework_id,
        decision.fast_track,
    )
    assert found == INTENDED[name]


@pytest.mark.parametrize("name", sorted(INTENDED))
def test_example_round_trips(name: str) -> None:
    request = load(name)
    again = TransferRequest.model_validate(json.loads(request.model_dump_json()))
    assert again == request and again.digest() == request.digest()


@pytest.mark.parametrize("name", sorted(INTENDED))
def test_example_ids_name_the_donor(name: str) -> None:
    request = load(name)
    assert request.transfer_id.startswith(f"TPT-{request.donor}-2026-")
    assert request.recipient == "UA"


def test_example_eeum_items_carry_one_serial_per_unit() -> None:
    for name in ("javelin-lt.json", "nvg-nl-dcs.json"):
        eeum = [i for i in load(name).items if i.eeum]
        assert eeum and all(len(i.serials) == i.quantity for i in eeum)


def test_example_frameworks(frameworks: list[FrameworkAuthorization]) -> None:
    (pilot,) = frameworks
    assert pilot.framework_id == PILOT
    assert pilot.donors == ["LT", "LV", "EE", "PL", "NL", "DE"]
    assert pilot.usml_categories == ["IV", "XII"]
    assert str(pilot.value_cap_usd) == "10000000.00"
    assert (pilot.valid_from.isoformat(), pilot.valid_until.isoformat()) == ("2026-01-01", "2027-12-31")


def test_patriot_meets_both_thresholds(frameworks: list[FrameworkAuthorization]) -> None:
    decision = evaluate(load("patriot-de.json"), at=AT, frameworks=frameworks)
    assert [r.split(" ≥ ")[0].split(" $")[0] for r in decision.notification_reasons] == [
        "MDE value",
        "total value",
    ]
