"""The transfer request contract: what is accepted, how it is normalized, and how refusals read."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from tpt import canonical, reference
from tpt.contract import (
    AcquisitionOrigin,
    LineItem,
    Priority,
    TransferRequest,
    error_path,
    format_validation_error,
)


def item(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "nsn": "1410-01-618-7390",
        "nomenclature": "Guided missile, FGM-148F Javelin",
        "usml_category": "IV",
        "quantity": 2,
        "unit_value_usd": "178000.00",
        "sme": True,
        "mde": True,
        "eeum": False,
    }
    return base | overrides


def request(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "transfer_id": "TPT-DE-2026-0001",
        "donor": "DE",
        "end_user": "Armed Forces of Ukraine",
        "end_use": "Defence of Ukrainian territory",
        "kind": "PERMANENT",
        "origin": "FMS",
        "fms_case": "GY-B-ZAA",
        "requested_by": "requester@bmvg.bund.de",
        "items": [item()],
    }
    return base | overrides


def problems(data: dict[str, Any]) -> dict[str, str]:
    """field path → message, as a person sees them in `format_validation_error`."""
    with pytest.raises(ValidationError) as caught:
        TransferRequest.model_validate(data)
    lines = format_validation_error(caught.value).splitlines()
    return dict(line.split(": ", 1) for line in lines)


def serials(count: int, prefix: str = "S") -> list[str]:
    return [f"{prefix}-{n:03d}" for n in range(count)]


REFUSALS = [
    # (case id, request, field path, what the message must say)
    ("unknown donor code", request(donor="XX"), "donor",
     "'XX' is not a known ISO 3166-1 alpha-2 code in the reference data"),
    ("unknown recipient code", request(recipient="ZZ"), "recipient",
     "'ZZ' is not a known ISO 3166-1 alpha-2 code in the reference data"),
    ("three-letter code", request(donor="DEU"), "donor", "not a known ISO 3166-1 alpha-2 code"),
    ("unknown consent nation", request(other_origin_consents=[{"nation": "QQ", "reason": "component"}]),
     "other_origin_consents[0].nation", "'QQ' is not a known ISO 3166-1 alpha-2 code"),
    ("non-NATO donor", request(donor="JP"), "donor", "Japan (JP) is not a NATO member"),
    ("recipient as donor", request(donor="UA"), "donor", "Ukraine (UA) is not a NATO member"),
    ("U.S. donor", request(donor="US"), "donor", "the United States is the originating state"),
    ("donor == recipient", request(donor="PL", recipient="pl"), "recipient",
     "recipient Poland (PL) is also the donor"),
    ("U.S. recipient", request(recipient="US"), "recipient", "not a third-party transfer"),
    ("USML XXII", request(items=[item(usml_category="XXII")]), "items[0].usml_category",
     "'XXII' is not a USML category; use a Roman numeral from I to XXI"),
    ("USML 0", request(items=[item(usml_category="0")]), "items[0].usml_category",
     "'0' is not a USML category"),
    ("USML IIII", request(items=[item(usml_category="IIII")]), "items[0].usml_category",
     "not a USML category"),
    ("quantity 0", request(items=[item(quantity=0)]), "items[0].quantity",
     "must be between 1 and 1,000,000 (got 0); give the number of units"),
    ("quantity negative", request(items=[item(quantity=-3)]), "items[0].quantity", "(got -3)"),
    ("negative value", request(items=[item(unit_value_usd="-1")]), "items[0].unit_value_usd",
     "must not be negative (got -1)"),
    ("fraction of a cent", request(items=[item(unit_value_usd="1.001")]), "items[0].unit_value_usd",
     "1.001 has fractions of a cent; round to whole cents"),
    ("absurd value", request(items=[item(unit_value_usd="1e30")]), "items[0].unit_value_usd",
     "implausibly large"),
    ("malformed NSN", request(items=[item(nsn="1410-01-61-7390")]), "items[0].nsn",
     "'1410-01-61-7390' is not a national stock number; write 13 digits as NNNN-NN-NNN-NNNN"),
    ("blank nomenclature", request(items=[item(nomenclature="  ")]), "items[0].nomenclature",
     "must not be blank"),
    ("MDE without SME", request(items=[item(sme=False, mde=True)]), "items[0].mde",
     "an MDE item is Significant Military Equipment by definition"),
    ("EEUM without serials", request(items=[item(eeum=True, quantity=2)]), "items[0].serials",
     "EEUM item needs exactly one serial per unit (quantity 2, got 0 serials); list one serial per unit"),
    ("EEUM too many serials", request(items=[item(eeum=True, quantity=2, serials=serials(3))]),
     "items[0].serials", "(quantity 2, got 3 serials)"),
    ("non-EEUM partial serials", request(items=[item(quantity=3, serials=serials(1))]), "items[0].serials",
     "serials, when given, must list one per unit (quantity 3, got 1 serials)"),
    ("serial twice in one item", request(items=[item(eeum=True, serials=["S-1", "S-1"])]),
     "items[0].serials", "serial 'S-1' is listed twice"),
    ("blank serial", request(items=[item(eeum=True, serials=["S-1", " "])]), "items[0].serials[1]",
     "is not a serial number"),
    ("serial across items",
     request(items=[item(eeum=True, serials=["S-1", "S-2"]), item(),
                    item(eeum=True, serials=["S-3", "S-1"])]),
     "items", "serial 'S-1' appears in items[0].serials and items[2].serials"),
    ("no items", request(items=[]), "items", "a request needs 1 to 1000 line items (got 0)"),
    ("DCS without licence", request(origin="DCS", fms_case=None), "export_licence",
     "DCS-origin articles need the export licence they were shipped under"),
    ("FMS without case", request(fms_case=None), "fms_case",
     "FMS-origin articles need the FMS case they were bought under; add fms_case"),
    ("FMS with blank case", request(fms_case="  "), "fms_case", "need the FMS case"),
    ("malformed FMS case", request(fms_case="GERMANY-1"), "fms_case",
     "'GERMANY-1' is not an FMS case identifier"),
    ("FMS case on DCS", request(origin="DCS", export_licence="050-987654"), "fms_case",
     "DCS-origin articles were not bought under an FMS case"),
    ("licence on FMS", request(export_licence="050-987654"), "export_licence",
     "were not exported under a commercial licence"),
    ("unknown field", request(colour="red"), "colour", "unknown field; remove it or check its spelling"),
    ("unknown item field", request(items=[item(weight_kg=15)]), "items[0].weight_kg", "unknown field"),
    ("missing field", {k: v for k, v in request().items() if k != "end_use"}, "end_use",
     "required field is missing; add it"),
    ("bad transfer id", request(transfer_id="tpt-de-1"), "transfer_id",
     "'tpt-de-1' is not a transfer id; use 'TPT-'"),
    ("short transfer id", request(transfer_id="TPT-AB"), "transfer_id", "is not a transfer id"),
    ("requester with spaces", request(requested_by="Hans Meier"), "requested_by", "without spaces"),
    ("unknown kind", request(kind="LOAN"), "kind", "'TEMPORARY' or 'PERMANENT'"),
    ("U.S. other-origin consent", request(other_origin_consents=[{"nation": "US", "reason": "x"}]),
     "other_origin_consents[0].nation", "list only non-U.S. states"),
    ("donor as other-origin consent", request(other_origin_consents=[{"nation": "DE", "reason": "x"}]),
     "other_origin_consents", "names the donor DE"),
    ("consent listed twice",
     request(other_origin_consents=[{"nation": "FR", "reason": "a"}, {"nation": "fr", "reason": "b"}]),
     "other_origin_consents", "FR is listed in other_origin_consents[0] and [1]"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "path", "message"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_refusal_names_the_field_and_the_reason(data: dict[str, Any], path: str, message: str) -> None:
    found = problems(data)
    assert list(found) == [path]
    assert message in found[path]


def test_error_line_reads_as_documented() -> None:
    items = [item(), item(nsn="1410-01-618-7391"), item(nsn="1410-01-618-7392", eeum=True, quantity=3,
                                                         serials=serials(2))]  # fmt: skip
    with pytest.raises(ValidationError) as caught:
        TransferRequest.model_validate(request(items=items))
    assert format_validation_error(caught.value) == (
        "items[2].serials: EEUM item needs exactly one serial per unit (quantity 3, got 2 serials); "
        "list one serial per unit"
    )
    assert caught.value.errors()[0]["loc"] == ("items", 2, "serials")


def test_every_problem_is_reported_at_once() -> None:
    found = problems(request(donor="XX", items=[item(quantity=0, usml_category="XXII")], colour="red"))
    assert set(found) == {"donor", "items[0].quantity", "items[0].usml_category", "colour"}


@pytest.mark.parametrize(
    ("loc", "path"),
    [((), "request"), (("donor",), "donor"), (("items", 2, "serials"), "items[2].serials"),
     (("items", 0, "serials", 1), "items[0].serials[1]")],
)  # fmt: skip
def test_error_path(loc: tuple[int | str, ...], path: str) -> None:
    assert error_path(loc) == path


def test_normalizes_codes_categories_and_money() -> None:
    accepted = TransferRequest.model_validate(
        request(donor=" de ", fms_case="gy-b-zaa",
                items=[item(nsn="1410016187390", usml_category="iv", unit_value_usd=178000)])
    )  # fmt: skip
    assert (accepted.donor, accepted.recipient, accepted.fms_case) == ("DE", "UA", "GY-B-ZAA")
    line = accepted.items[0]
    assert (line.nsn, line.usml_category, line.unit_value_usd) == (
        "1410-01-618-7390",
        "IV",
        Decimal("178000.00"),
    )
    assert accepted.priority is Priority.ROUTINE and accepted.origin is AcquisitionOrigin.FMS


def test_money_serializes_as_string_and_round_trips() -> None:
    accepted = TransferRequest.model_validate(request())
    assert accepted.model_dump(mode="json")["items"][0]["unit_value_usd"] == "178000.00"
    assert TransferRequest.model_validate_json(accepted.model_dump_json()) == accepted


@pytest.mark.parametrize(
    ("origin", "references"),
    [("FMS", {"fms_case": "GY-B-ZAA"}), ("GRANT", {"fms_case": None}), ("GRANT", {"fms_case": "GY-B-ZAB"}),
     ("DCS", {"fms_case": None, "export_licence": "050-987654"})],
)  # fmt: skip
def test_origin_references_accepted(origin: str, references: dict[str, Any]) -> None:
    accepted = TransferRequest.model_validate(request(origin=origin, **references))
    assert accepted.origin == origin


@pytest.mark.parametrize(
    ("eeum", "quantity", "given"),
    [(True, 3, serials(3)), (False, 3, []), (False, 3, serials(3))],
)
def test_serial_rules_accept(eeum: bool, quantity: int, given: list[str]) -> None:
    line = LineItem.model_validate(item(eeum=eeum, quantity=quantity, serials=given))
    assert line.serials == given


def test_totals_and_categories() -> None:
    accepted = TransferRequest.model_validate(request(items=[
        item(usml_category="XII", quantity=2, unit_value_usd="10.50", sme=False, mde=False),
        item(usml_category="IX", quantity=1, unit_value_usd="100"),
        item(usml_category="IV", quantity=3, unit_value_usd="1000"),
    ]))  # fmt: skip
    assert accepted.total_value_usd == Decimal("3121.00")
    assert accepted.mde_value_usd == Decimal("3100.00")
    assert accepted.usml_categories == ["IV", "IX", "XII"]  # numeric, not alphabetical, order


def test_models_are_frozen() -> None:
    accepted = TransferRequest.model_validate(request())
    with pytest.raises(ValidationError):
        accepted.donor = "PL"  # type: ignore[misc]


def _reversed(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reversed(v) for k, v in reversed(value.items())}
    if isinstance(value, list):
        return [_reversed(v) for v in value]
    return value


def test_digest_is_canonical_and_ignores_field_order() -> None:
    data = request(items=[item(eeum=True, serials=["A-1", "A-2"])])
    accepted = TransferRequest.model_validate(data)
    assert accepted.digest() == canonical.digest(accepted.model_dump(mode="json"))
    assert TransferRequest.model_validate(_reversed(data)).digest() == accepted.digest()
    assert len(accepted.digest()) == 64


def test_digest_ignores_spelling_but_not_content() -> None:
    accepted = TransferRequest.model_validate(request())
    respelled = request(donor="de", items=[item(unit_value_usd="178000", usml_category="iv")])
    assert TransferRequest.model_validate(respelled).digest() == accepted.digest()
    amended = request(items=[item(quantity=3)])
    assert TransferRequest.model_validate(amended).digest() != accepted.digest()


# --- reference data -------------------------------------------------------------------------------------


def test_reference_has_all_32_nato_members() -> None:
    members = {code for code, found in reference.nations().items() if found.nato}
    assert len(members) == 32
    assert {"SE", "FI", "US", "TR", "MK", "ME"} <= members


@pytest.mark.parametrize(
    ("code", "known", "nato"),
    [("DE", True, True), ("de", True, True), ("UA", True, False), ("JP", True, False), ("CH", True, False),
     ("SE", True, True), ("XX", False, False), ("", False, False)],
)  # fmt: skip
def test_reference_lookups(code: str, known: bool, nato: bool) -> None:
    assert reference.is_known(code) is known
    assert reference.is_nato(code) is nato
    assert (reference.nation(code) is not None) is known


def test_reference_nation_is_frozen_data() -> None:
    germany = reference.nation("DE")
    assert germany is not None and germany.name == "Germany"
    with pytest.raises(ValidationError):
        germany.name = "Prussia"  # type: ignore[misc]
