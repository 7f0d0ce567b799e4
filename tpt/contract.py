"""The transfer request contract (DESIGN.md §2 "Request"): what a requester submits, validated before any
workflow starts.

Every model is frozen and refuses unknown fields, so a typo never silently drops a fact. Each refusal is a
pydantic ValidationError whose `loc` is the field path and whose message says what is wrong and what to do;
`format_validation_error` renders them one per line for people.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from tpt import canonical, reference
from tpt.text import no_control_characters

USML_CATEGORIES: tuple[str, ...] = (
    "I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI",
    "XII", "XIII", "XIV", "XV", "XVI", "XVII", "XVIII", "XIX", "XX", "XXI",
)  # fmt: skip
MAX_ITEMS = 1000
MAX_QUANTITY = 1_000_000
# Bounds keep every sum well inside Decimal's 28-digit context, so arithmetic never raises.
MAX_UNIT_VALUE_USD = Decimal("10000000000")

_CENT = Decimal("0.01")
_NSN = re.compile(r"^(\d{4})-?(\d{2})-?(\d{3})-?(\d{4})$")
_TRANSFER_ID = re.compile(r"^TPT-[A-Z0-9-]{3,60}$")
_FMS_CASE = re.compile(r"^[A-Z0-9]{2}-[A-Z]-[A-Z0-9]{3}$")
_LICENCE = re.compile(r"^[A-Z0-9][A-Z0-9./ -]{2,39}$")
# \S alone would let control characters through; Postgres cannot store U+0000 at all.
_ACTOR = re.compile(r"^[^\s\x00-\x1f\x7f]{1,200}$")
_SERIAL = re.compile(r"^[^\s\x00-\x1f\x7f]{1,64}$")


def _refuse(kind: str, message: str) -> PydanticCustomError:
    # No context: the message is final text, so braces in user input are never interpreted.
    return PydanticCustomError(kind, message)


# --- reusable field types -------------------------------------------------------------------------------


def _nation_code(value: str) -> str:
    code = value.strip().upper()
    if not reference.is_known(code):
        raise _refuse(
            "unknown_nation",
            f"'{value}' is not a known ISO 3166-1 alpha-2 code in the reference data "
            "(tpt/data/nations.json); use a two-letter code such as 'DE' or 'UA'",
        )
    return code


def _usml_category(value: str) -> str:
    category = value.strip().upper()
    if category not in USML_CATEGORIES:
        raise _refuse(
            "usml_category",
            f"'{value}' is not a USML category; use a Roman numeral from I to XXI (22 CFR §121.1), e.g. 'IV'",
        )
    return category


def _usd(value: Decimal) -> Decimal:
    if value < 0:
        raise _refuse("usd_negative", f"must not be negative (got {value}); give the value in U.S. dollars")
    if value > MAX_UNIT_VALUE_USD:
        raise _refuse("usd_too_large", f"{value} is implausibly large; give the value in U.S. dollars")
    if value != value.quantize(_CENT):
        raise _refuse("usd_precision", f"{value} has fractions of a cent; round to whole cents")
    return value.quantize(_CENT)  # one representation per amount, so equal amounts give equal digests


def _text(value: str) -> str:
    text = no_control_characters(value.strip())
    if not text:
        raise _refuse("blank", "must not be blank; give a value")
    return text


def _serial(value: str) -> str:
    serial = value.strip()
    if not _SERIAL.match(serial):
        raise _refuse("serial", f"'{value}' is not a serial number; give 1–64 characters without spaces")
    return serial


NationCode = Annotated[str, AfterValidator(_nation_code)]
UsmlCategory = Annotated[str, AfterValidator(_usml_category)]
UsdAmount = Annotated[Decimal, AfterValidator(_usd)]
Text = Annotated[str, Field(max_length=1000), AfterValidator(_text)]
Serial = Annotated[str, AfterValidator(_serial)]


def usml_sort_key(category: str) -> int:
    """Numeric order of a USML category (IV before IX before XII)."""
    return USML_CATEGORIES.index(category)


# --- enums ------------------------------------------------------------------------------------------------


class AcquisitionOrigin(StrEnum):
    """How the donor originally acquired the articles; this decides the U.S. approval route."""

    FMS = "FMS"
    GRANT = "GRANT"
    DCS = "DCS"


class Priority(StrEnum):
    ROUTINE = "ROUTINE"
    PRIORITY = "PRIORITY"
    URGENT = "URGENT"
    EMERGENCY = "EMERGENCY"


class TransferKind(StrEnum):
    TEMPORARY = "TEMPORARY"
    PERMANENT = "PERMANENT"


# --- models -------------------------------------------------------------------------------------------


class LineItem(BaseModel):
    """One kind of article: quantity, value and the flags that drive notification, DSP-83 and EEUM.

    Serials: an EEUM item lists exactly one serial per unit. Any other item may omit serials, but if it gives
    any it must give one per unit too, because custody handovers match serials to units and a partial list
    cannot be checked.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    nsn: str = Field(description="national stock number, NNNN-NN-NNN-NNNN")
    nomenclature: Text
    usml_category: UsmlCategory
    quantity: int
    unit_value_usd: UsdAmount = Field(description="original acquisition value per unit, USD")
    sme: bool = Field(description="Significant Military Equipment")
    mde: bool = Field(description="Major Defense Equipment (a subset of SME)")
    eeum: bool = Field(description="Enhanced End-Use Monitoring item")
    serials: list[Serial] = Field(default_factory=list, validate_default=True)

    @field_validator("nsn")
    @classmethod
    def _nsn_format(cls, value: str) -> str:
        match = _NSN.match(value.strip())
        if match is None:
            raise _refuse(
                "nsn",
                f"'{value}' is not a national stock number; write 13 digits as NNNN-NN-NNN-NNNN, "
                "e.g. '1410-01-613-0447'",
            )
        return "-".join(match.groups())

    @field_validator("quantity")
    @classmethod
    def _quantity_positive(cls, value: int) -> int:
        if not 1 <= value <= MAX_QUANTITY:
            raise _refuse(
                "quantity", f"must be between 1 and {MAX_QUANTITY:,} (got {value}); give the number of units"
            )
        return value

    @field_validator("mde")
    @classmethod
    def _mde_is_sme(cls, mde: bool, info: ValidationInfo) -> bool:
        # AECA §47(6): MDE is SME with high R&D or production cost, so MDE without SME is a data error.
        if mde and info.data.get("sme") is False:
            raise _refuse(
                "mde_without_sme",
                "an MDE item is Significant Military Equipment by definition (AECA §47(6)); set sme to true",
            )
        return mde

    @field_validator("serials")
    @classmethod
    def _one_serial_per_unit(cls, serials: list[str], info: ValidationInfo) -> list[str]:
        _refuse_repeats(serials)
        quantity, eeum = info.data.get("quantity"), info.data.get("eeum")
        if quantity is None or eeum is None or len(serials) == quantity:
            return serials  # a failed quantity/eeum is reported on its own field
        if eeum:
            raise _refuse(
                "eeum_serials",
                f"EEUM item needs exactly one serial per unit (quantity {quantity}, got {len(serials)} "
                "serials); list one serial per unit",
            )
        if serials:
            raise _refuse(
                "serial_count",
                f"serials, when given, must list one per unit (quantity {quantity}, got {len(serials)} "
                "serials); list one serial per unit or leave serials empty",
            )
        return serials

    @property
    def total_value_usd(self) -> Decimal:
        return self.unit_value_usd * self.quantity


def _refuse_repeats(serials: Sequence[str]) -> None:
    seen: set[str] = set()
    for serial in serials:
        if serial in seen:
            raise _refuse(
                "duplicate_serial",
                f"serial '{serial}' is listed twice; each unit has its own serial, remove the duplicate",
            )
        seen.add(serial)


class OtherOriginConsent(BaseModel):
    """A non-U.S. state whose consent is also needed (e.g. the state of a component's manufacturer)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nation: NationCode
    reason: Text = Field(description="why this state's consent is needed, and under what authority")

    @field_validator("nation")
    @classmethod
    def _not_united_states(cls, code: str) -> str:
        if code == "US":
            raise _refuse(
                "us_other_origin",
                "U.S. consent is what the request itself asks for; list only non-U.S. states here",
            )
        return code


class TransferRequest(BaseModel):
    """A request to transfer U.S.-origin articles from a NATO ally to a third party (by default Ukraine)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    transfer_id: str = Field(description="also the Temporal workflow id")
    donor: NationCode
    recipient: NationCode = Field(default="UA", validate_default=True)
    end_user: Text
    end_use: Text
    kind: TransferKind
    priority: Priority = Priority.ROUTINE
    origin: AcquisitionOrigin
    fms_case: str | None = Field(default=None, validate_default=True)
    export_licence: str | None = Field(default=None, validate_default=True)
    requested_by: str = Field(description="actor id of the requester, e.g. an e-mail address")
    classified: bool = False
    items: list[LineItem]
    other_origin_consents: list[OtherOriginConsent] = Field(default_factory=list)

    @field_validator("transfer_id")
    @classmethod
    def _transfer_id_format(cls, value: str) -> str:
        if not _TRANSFER_ID.match(value):
            raise _refuse(
                "transfer_id",
                f"'{value}' is not a transfer id; use 'TPT-' then 3–60 upper-case letters, digits or "
                "hyphens, e.g. 'TPT-DE-2026-0001'",
            )
        return value

    @field_validator("donor")
    @classmethod
    def _donor_is_ally(cls, code: str) -> str:
        if code == "US":
            raise _refuse(
                "donor_us",
                "the United States is the originating state, not a third party; the donor is the ally "
                "holding the articles",
            )
        if not reference.is_nato(code):
            raise _refuse(
                "donor_not_nato",
                f"{_name(code)} is not a NATO member; the donor must be a NATO ally holding "
                "U.S.-origin articles",
            )
        return code

    @field_validator("recipient")
    @classmethod
    def _recipient_is_third_party(cls, code: str, info: ValidationInfo) -> str:
        if code == info.data.get("donor"):
            raise _refuse(
                "recipient_is_donor",
                f"recipient {_name(code)} is also the donor; a third-party transfer goes to another state",
            )
        if code == "US":
            raise _refuse(
                "recipient_us",
                "a return to the United States is not a third-party transfer; name the recipient",
            )
        return code

    @field_validator("fms_case")
    @classmethod
    def _fms_case_matches_origin(cls, value: str | None, info: ValidationInfo) -> str | None:
        origin = info.data.get("origin")
        case = (value or "").strip().upper()
        if not case:
            if origin is AcquisitionOrigin.FMS:
                raise _refuse(
                    "fms_case_required",
                    "FMS-origin articles need the FMS case they were bought under; add fms_case, "
                    "e.g. 'GY-B-ZAA'",
                )
            return None
        if origin is AcquisitionOrigin.DCS:
            raise _refuse(
                "fms_case_on_dcs",
                "DCS-origin articles were not bought under an FMS case; remove fms_case or correct origin",
            )
        if not _FMS_CASE.match(case):
            raise _refuse(
                "fms_case",
                f"'{value}' is not an FMS case identifier; write country, implementing agency and case "
                "designator as CC-A-XXX, e.g. 'GY-B-ZAA'",
            )
        return case

    @field_validator("export_licence")
    @classmethod
    def _licence_matches_origin(cls, value: str | None, info: ValidationInfo) -> str | None:
        origin = info.data.get("origin")
        licence = (value or "").strip().upper()
        if not licence:
            if origin is AcquisitionOrigin.DCS:
                raise _refuse(
                    "export_licence_required",
                    "DCS-origin articles need the export licence they were shipped under (retransfer "
                    "under ITAR §123.9); add export_licence",
                )
            return None
        if origin in (AcquisitionOrigin.FMS, AcquisitionOrigin.GRANT):
            raise _refuse(
                "export_licence_on_fms",
                "FMS- and grant-origin articles were not exported under a commercial licence; remove "
                "export_licence or correct origin",
            )
        if not _LICENCE.match(licence):
            raise _refuse(
                "export_licence",
                f"'{value}' is not a licence reference; give 3–40 letters, digits, '-', '/', '.' or spaces",
            )
        return licence

    @field_validator("requested_by")
    @classmethod
    def _actor_id(cls, value: str) -> str:
        if not _ACTOR.match(value.strip()):
            raise _refuse(
                "actor_id",
                "must be the requester's actor id without spaces, e.g. 'requester@bmvg.bund.de'",
            )
        return value.strip()

    @field_validator("items")
    @classmethod
    def _items_sane(cls, items: list[LineItem]) -> list[LineItem]:
        if not 1 <= len(items) <= MAX_ITEMS:
            raise _refuse(
                "item_count",
                f"a request needs 1 to {MAX_ITEMS} line items (got {len(items)}); "
                "list the articles to transfer",
            )
        _refuse_serials_across_items(items)
        return items

    @field_validator("other_origin_consents")
    @classmethod
    def _consents_distinct(
        cls, consents: list[OtherOriginConsent], info: ValidationInfo
    ) -> list[OtherOriginConsent]:
        seen: dict[str, int] = {}
        for index, consent in enumerate(consents):
            if consent.nation == info.data.get("donor"):
                raise _refuse(
                    "consent_from_donor",
                    f"other_origin_consents[{index}] names the donor {consent.nation}; the donor consents "
                    "through its ally sign-off, so list only other states",
                )
            if consent.nation in seen:
                raise _refuse(
                    "duplicate_consent",
                    f"{consent.nation} is listed in other_origin_consents[{seen[consent.nation]}] and "
                    f"[{index}]; list each state once",
                )
            seen[consent.nation] = index
        return consents

    @property
    def total_value_usd(self) -> Decimal:
        return sum((item.total_value_usd for item in self.items), Decimal("0.00"))

    @property
    def mde_value_usd(self) -> Decimal:
        return sum((item.total_value_usd for item in self.items if item.mde), Decimal("0.00"))

    @property
    def usml_categories(self) -> list[str]:
        return sorted({item.usml_category for item in self.items}, key=usml_sort_key)

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the request: what sign-offs and decisions are bound to."""
        return canonical.digest(self.model_dump(mode="json"))


def _name(code: str) -> str:
    found = reference.nation(code)
    return f"{found.name} ({code})" if found else code


def _refuse_serials_across_items(items: Sequence[LineItem]) -> None:
    # A serial identifies one physical article, so it may appear in only one item of the request.
    first_seen: dict[str, int] = {}
    for index, item in enumerate(items):
        for serial in item.serials:
            if serial in first_seen:
                raise _refuse(
                    "duplicate_serial",
                    f"serial '{serial}' appears in items[{first_seen[serial]}].serials and "
                    f"items[{index}].serials; a serial identifies one article, correct one of them",
                )
            first_seen[serial] = index


# --- errors for people ------------------------------------------------------------------------------

_PLAIN_MESSAGES = {
    "extra_forbidden": "unknown field; remove it or check its spelling",
    "missing": "required field is missing; add it",
}


def error_path(loc: Sequence[int | str], whole: str = "request") -> str:
    """`("items", 2, "serials")` → `items[2].serials`; the empty path is the input itself, named `whole`."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or whole


def validation_problems(err: ValidationError, whole: str = "request") -> list[tuple[str, str]]:
    """(field path, what is wrong; what to do) for each problem, straight from pydantic's details, so a path
    holding any character (even a line separator) stays whole."""
    return [(error_path(d["loc"], whole), _PLAIN_MESSAGES.get(d["type"], d["msg"])) for d in err.errors()]


def format_validation_error(err: ValidationError) -> str:
    """One line per problem: `<field path>: <what is wrong>; <what to do>`."""
    return "\n".join(f"{path}: {message}" for path, message in validation_problems(err))
