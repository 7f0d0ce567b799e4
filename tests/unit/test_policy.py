"""Policy evaluation: every threshold and window boundary, routing, DSP-83, EEUM, frameworks, determinism."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from tpt import canonical
from tpt.contract import TransferRequest
from tpt.policy import (
    DEFAULT_POLICY_VERSION,
    ApprovalRoute,
    FrameworkAuthorization,
    PolicyDecision,
    PolicyStatus,
    UnknownPolicyVersion,
    evaluate,
    format_usd,
    load_policy,
    parse_frameworks,
    policy_versions,
)

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def item(value: str, *, mde: bool = False, quantity: int = 1, **overrides: Any) -> dict[str, Any]:
    """A line item worth `value` per unit; MDE items are SME, as the contract requires."""
    base: dict[str, Any] = {
        "nsn": "1410-01-618-7390",
        "nomenclature": "Guided missile",
        "usml_category": "IV",
        "quantity": quantity,
        "unit_value_usd": value,
        "sme": mde,
        "mde": mde,
        "eeum": False,
    }
    return base | overrides


def make_request(*items: dict[str, Any], **overrides: Any) -> TransferRequest:
    data: dict[str, Any] = {
        "transfer_id": "TPT-LT-2026-0001",
        "donor": "LT",
        "end_user": "Armed Forces of Ukraine",
        "end_use": "Defence of Ukrainian territory",
        "kind": "PERMANENT",
        "origin": "FMS",
        "fms_case": "LH-B-ZAA",
        "requested_by": "requester@kam.lt",
        "items": list(items) or [item("1000")],
    }
    return TransferRequest.model_validate(data | overrides)


def framework(**overrides: Any) -> FrameworkAuthorization:
    data: dict[str, Any] = {
        "framework_id": "NATO-TPT-PILOT-2026",
        "name": "NATO-wide framework (pilot)",
        "donors": ["LT", "LV", "EE", "PL", "NL", "DE"],
        "usml_categories": ["IV", "XII"],
        "value_cap_usd": "10000000",
        "valid_from": "2026-01-01",
        "valid_until": "2027-12-31",
    }
    return FrameworkAuthorization.model_validate(data | overrides)


# --- congressional notification -----------------------------------------------------------------------

NOTIFICATION = [
    # (case id, items, required, reasons)
    ("MDE exactly $14M", [item("14000000", mde=True)],
     ["MDE value $14,000,000 ≥ $14,000,000 (AECA §3(d)(1))"]),
    ("MDE $13,999,999", [item("13999999", mde=True)], []),
    ("MDE $13,999,999.99", [item("13999999.99", mde=True)], []),
    ("MDE summed over units", [item("7000000", mde=True, quantity=2)],
     ["MDE value $14,000,000 ≥ $14,000,000"]),
    ("MDE summed over items", [item("7000000", mde=True), item("7000000", mde=True)],
     ["MDE value $14,000,000 ≥ $14,000,000"]),
    ("non-MDE $14M does not count as MDE", [item("14000000")], []),
    ("total exactly $50M", [item("50000000")], ["total value $50,000,000 ≥ $50,000,000 (AECA §3(d)(1))"]),
    ("total $49,999,999.99", [item("49999999.99")], []),
    ("total reached with MDE below its threshold", [item("13999999", mde=True), item("36000001")],
     ["total value $50,000,000 ≥ $50,000,000"]),
    ("both thresholds", [item("50000000", mde=True)],
     ["MDE value $50,000,000 ≥ $14,000,000", "total value $50,000,000 ≥ $50,000,000"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("items", "reasons"), [c[1:] for c in NOTIFICATION], ids=[c[0] for c in NOTIFICATION]
)
def test_notification_thresholds_are_inclusive(items: list[dict[str, Any]], reasons: list[str]) -> None:
    decision = evaluate(make_request(*items), at=AT)
    assert decision.notification_required is bool(reasons)
    assert len(decision.notification_reasons) == len(reasons)
    for found, expected in zip(decision.notification_reasons, reasons, strict=True):
        assert found.startswith(expected)
    assert decision.review_days == (30 if reasons else None)  # recipient UA is outside the 15-day group


@pytest.mark.parametrize(
    ("donor", "recipient", "days"),
    [("LT", "UA", 30), ("DE", "PL", 15), ("DE", "SE", 15), ("DE", "JP", 15), ("DE", "AU", 15),
     ("DE", "KR", 15), ("DE", "IL", 15), ("DE", "NZ", 15), ("DE", "CH", 30), ("DE", "IE", 30)],
)  # fmt: skip
def test_review_period_depends_on_recipient(donor: str, recipient: str, days: int) -> None:
    request = make_request(item("14000000", mde=True), donor=donor, recipient=recipient)
    assert evaluate(request, at=AT).review_days == days


@pytest.mark.parametrize(
    ("items", "aeca", "hr3138"),
    [([item("20000000", mde=True)], True, False),
     ([item("23000000", mde=True)], True, True),
     ([item("22999999.99", mde=True)], True, False),
     ([item("83000000")], True, True),
     ([item("82999999.99")], True, False),
     ([item("13999999", mde=True)], False, False)],
    ids=["MDE $20M", "MDE $23M", "MDE just under $23M", "total $83M", "total just under $83M", "below both"],
)  # fmt: skip
def test_policy_version_changes_the_outcome(items: list[dict[str, Any]], aeca: bool, hr3138: bool) -> None:
    request = make_request(*items)
    current = evaluate(request, at=AT)
    proposed = evaluate(request, at=AT, version="hr3138-proposed")
    assert (current.policy_version, current.notification_required) == ("aeca-2025.1", aeca)
    assert (proposed.policy_version, proposed.notification_required) == ("hr3138-proposed", hr3138)


def test_hr3138_reason_names_its_threshold() -> None:
    decision = evaluate(make_request(item("23000000", mde=True)), at=AT, version="hr3138-proposed")
    assert decision.notification_reasons[0].startswith(
        "MDE value $23,000,000 ≥ $23,000,000 (AECA §3(d)(1) as"
    )


# --- routing, DSP-83, EEUM ------------------------------------------------------------------------------


def _origin(origin: str) -> dict[str, Any]:
    if origin == "DCS":
        return {"origin": "DCS", "fms_case": None, "export_licence": "050-987654"}
    return {"origin": origin}


@pytest.mark.parametrize(
    ("origin", "route"),
    [("FMS", ApprovalRoute.PM_RSAT), ("GRANT", ApprovalRoute.PM_RSAT), ("DCS", ApprovalRoute.PM_DDTC)],
)
def test_route_follows_acquisition_origin(origin: str, route: ApprovalRoute) -> None:
    assert evaluate(make_request(**_origin(origin)), at=AT).route is route


@pytest.mark.parametrize(
    ("origin", "sme", "classified", "reasons"),
    [("DCS", True, False, ["SME on the DCS route: 1410-01-618-7390 (ITAR §123.10)"]),
     ("DCS", False, True, ["classified articles on the DCS route (ITAR §123.10)"]),
     ("DCS", True, True, ["SME on the DCS route: 1410-01-618-7390 (ITAR §123.10)",
                          "classified articles on the DCS route (ITAR §123.10)"]),
     ("DCS", False, False, []),
     ("FMS", True, False, []),
     ("FMS", True, True, []),
     ("GRANT", True, True, [])],
)  # fmt: skip
def test_dsp83_only_for_sme_or_classified_on_dcs(
    origin: str, sme: bool, classified: bool, reasons: list[str]
) -> None:
    request = make_request(item("1000", sme=sme), classified=classified, **_origin(origin))
    decision = evaluate(request, at=AT)
    assert decision.dsp83_required is bool(reasons)
    assert decision.dsp83_reasons == reasons


def test_eeum_items_listed_once_with_inventory_clock() -> None:
    eeum: dict[str, Any] = {"eeum": True, "quantity": 2}
    request = make_request(
        item("100", nsn="5855-01-534-5931", serials=["N-1", "N-2"], **eeum),
        item("100", nsn="1410-01-618-7390"),
        item("100", nsn="5855-01-534-5931", serials=["N-3", "N-4"], **eeum),
    )
    decision = evaluate(request, at=AT)
    assert decision.eeum_items == ["5855-01-534-5931"]
    assert decision.eeum_inventory_days == 90


def test_no_eeum_items_no_inventory_clock() -> None:
    decision = evaluate(make_request(), at=AT)
    assert (decision.eeum_items, decision.eeum_inventory_days) == ([], None)


# --- framework authorization ----------------------------------------------------------------------------

FRAMEWORK_CASES = [
    # (case id, request overrides, items, at, covered, note fragment)
    ("covered", {}, [item("1000000")], AT, True, "covers the request; consent under the framework"),
    ("donor not listed", {"donor": "FR"}, [item("1000000")], AT, False, "donor FR not listed"),
    ("recipient not listed", {"recipient": "IE"}, [item("1000000")], AT, False, "recipient IE not listed"),
    ("category not listed", {}, [item("1000000", usml_category="III")], AT, False, "USML III not listed"),
    ("one of two categories not listed", {},
     [item("1000", usml_category="XII"), item("1000", usml_category="XI")], AT, False, "USML XI not listed"),
    ("exactly at cap", {}, [item("10000000")], AT, True, "covers the request"),
    ("over cap", {}, [item("10000000.01")], AT, False, "total value $10,000,000.01 over cap $10,000,000"),
    ("first day", {}, [item("1000")], datetime(2026, 1, 1, tzinfo=UTC), True, "covers the request"),
    ("day before", {}, [item("1000")], datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC), False,
     "not valid before 2026-01-01"),
    ("last day", {}, [item("1000")], datetime(2027, 12, 31, 23, 59, 59, tzinfo=UTC), True,
     "covers the request"),
    ("day after", {}, [item("1000")], datetime(2028, 1, 1, tzinfo=UTC), False, "expired after 2027-12-31"),
    ("window is in UTC days", {}, [item("1000")],
     datetime(2026, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=2))), False, "not valid before 2026-01-01"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "items", "at", "covered", "note"),
    [c[1:] for c in FRAMEWORK_CASES],
    ids=[c[0] for c in FRAMEWORK_CASES],
)
def test_framework_coverage(
    overrides: dict[str, Any], items: list[dict[str, Any]], at: datetime, covered: bool, note: str
) -> None:
    decision = evaluate(make_request(*items, **overrides), at=at, frameworks=[framework()])
    assert decision.framework_id == ("NATO-TPT-PILOT-2026" if covered else None)
    assert decision.fast_track is covered
    assert decision.notification_required is False
    assert len(decision.framework_notes) == 1 and note in decision.framework_notes[0]


def test_covered_but_notifiable_is_not_fast_track() -> None:
    generous = framework(value_cap_usd="100000000")
    decision = evaluate(make_request(item("14000000", mde=True)), at=AT, frameworks=[generous])
    assert decision.framework_id == "NATO-TPT-PILOT-2026"
    assert decision.notification_required and not decision.fast_track
    assert decision.framework_notes == [
        "NATO-TPT-PILOT-2026: covers the request, but notification is required, so no fast track"
    ]


def test_first_covering_framework_wins_and_misses_are_noted() -> None:
    nordic = framework(framework_id="NORDIC-2026", donors=["FI", "SE", "NO", "DK"])
    baltic = framework(framework_id="BALTIC-2026", donors=["LT", "LV", "EE"])
    spare = framework(framework_id="SPARE-2026")
    decision = evaluate(make_request(), at=AT, frameworks=[nordic, baltic, spare])
    assert decision.framework_id == "BALTIC-2026" and decision.fast_track
    assert decision.framework_notes == [
        "NORDIC-2026: donor LT not listed",
        "BALTIC-2026: covers the request; consent under the framework",
    ]


def test_no_frameworks_no_fast_track() -> None:
    decision = evaluate(make_request(), at=AT)
    assert (decision.framework_id, decision.fast_track, decision.framework_notes) == (None, False, [])


def test_every_gap_is_named() -> None:
    decision = evaluate(
        make_request(item("20000000", usml_category="III"), donor="FR", recipient="IE"),
        at=datetime(2028, 6, 1, tzinfo=UTC),
        frameworks=[framework()],
    )
    assert decision.framework_notes == [
        "NATO-TPT-PILOT-2026: donor FR not listed; recipient IE not listed; USML III not listed; "
        "total value $20,000,000 over cap $10,000,000; expired after 2027-12-31"
    ]


@pytest.mark.parametrize(
    ("overrides", "path"),
    [({"valid_until": "2025-12-31"}, ("valid_until",)), ({"donors": ["XX"]}, ("donors", 0)),
     ({"usml_categories": ["XXII"]}, ("usml_categories", 0)), ({"donors": []}, ("donors",)),
     ({"value_cap_usd": "-1"}, ("value_cap_usd",)), ({"framework_id": "x"}, ("framework_id",)),
     ({"scope": "all"}, ("scope",))],
)  # fmt: skip
def test_framework_refusals(overrides: dict[str, Any], path: tuple[int | str, ...]) -> None:
    with pytest.raises(ValidationError) as caught:
        framework(**overrides)
    assert [e["loc"] for e in caught.value.errors()] == [path]


def test_framework_recipients_default_to_ukraine() -> None:
    assert framework().recipients == ["UA"]


def test_parse_frameworks_refuses_duplicate_ids() -> None:
    one = framework().model_dump_json()
    assert len(parse_frameworks(f"[{one}]")) == 1
    with pytest.raises(ValueError, match="framework ids must be unique"):
        parse_frameworks(f"[{one},{one}]")


# --- policy versions ----------------------------------------------------------------------------------


def test_policy_versions_are_data() -> None:
    assert {"aeca-2025.1", "hr3138-proposed"} <= set(policy_versions())
    current = load_policy()
    assert current.version == DEFAULT_POLICY_VERSION == "aeca-2025.1"
    assert current.status is PolicyStatus.IN_FORCE
    assert (current.mde_usd, current.total_usd) == (Decimal("14000000"), Decimal("50000000"))
    assert (current.review_days_default, current.review_days_group, current.eeum_inventory_days) == (
        30,
        15,
        90,
    )
    assert current.review_group.nato_members and current.review_group.nations == [
        "JP",
        "AU",
        "KR",
        "IL",
        "NZ",
    ]
    proposed = load_policy("hr3138-proposed")
    assert proposed.status is PolicyStatus.PROPOSED
    assert (proposed.mde_usd, proposed.total_usd) == (Decimal("23000000"), Decimal("83000000"))


@pytest.mark.parametrize("version", ["aeca-1999", "../nations", "AECA-2025.1", ""])
def test_unknown_policy_version_is_refused(version: str) -> None:
    with pytest.raises(UnknownPolicyVersion, match="known versions: aeca-2025.1"):
        load_policy(version)


def test_unknown_version_in_evaluate() -> None:
    with pytest.raises(UnknownPolicyVersion):
        evaluate(make_request(), at=AT, version="aeca-1999")


# --- determinism and binding ----------------------------------------------------------------------------


def test_decision_records_version_digest_and_time() -> None:
    request = make_request()
    decision = evaluate(request, at=AT)
    assert decision.policy_version == "aeca-2025.1"
    assert decision.request_digest == request.digest()
    assert (decision.transfer_id, decision.evaluated_at) == ("TPT-LT-2026-0001", AT)


def test_same_input_same_decision() -> None:
    request = make_request(item("14000000", mde=True, eeum=True, serials=["S-1"]))
    first = evaluate(request, at=AT, frameworks=[framework()])
    again = evaluate(make_request(item("14000000", mde=True, eeum=True, serials=["S-1"])), at=AT,
                     frameworks=[framework()])  # fmt: skip
    assert first == again
    assert canonical.digest(first) == canonical.digest(again)
    assert PolicyDecision.model_validate_json(first.model_dump_json()) == first


def test_decision_ignores_input_field_order() -> None:
    data = make_request(item("14000000", mde=True)).model_dump(mode="json")
    shuffled = {k: data[k] for k in sorted(data, reverse=True)}
    shuffled["items"] = [dict(reversed(list(i.items()))) for i in data["items"]]
    first = evaluate(TransferRequest.model_validate(data), at=AT)
    second = evaluate(TransferRequest.model_validate(shuffled), at=AT)
    assert first == second and first.request_digest == second.request_digest


def test_amended_request_has_a_new_digest() -> None:
    before = evaluate(make_request(item("1000", quantity=2)), at=AT)
    after = evaluate(make_request(item("1000", quantity=3)), at=AT)
    assert before.request_digest != after.request_digest


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate(make_request(), at=datetime(2026, 3, 2, 9, 0))


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (Decimal("14000000.00"), "$14,000,000"),
        (Decimal("49999999.99"), "$49,999,999.99"),
        (Decimal("0"), "$0"),
    ],
)
def test_format_usd(amount: Decimal, text: str) -> None:
    assert format_usd(amount) == text


def test_framework_window_uses_dates() -> None:
    assert framework().valid_from == date(2026, 1, 1)
