"""`tpt submit|status|list|watch|sign-off|decide|…`: the transfer commands, on top of the client SDK.

Exit codes (tpt/cli_support.py): 0 ok, 1 failed, 2 bad input (nothing sent), 3 refused (by the workflow, or a
conflicting submit), 4 not found, 5 Temporal or its worker unreachable.

Decisions are signed with `--key FILE` (or TPT_SIGNING_KEY), the decider's key file from `tpt keys generate`; the
actor option (--signer, --reviewer, …) then defaults to the key's holder.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import BaseModel, ValidationError

from tpt.cli_support import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    ends_process,
    fail,
    temporal_used,
)
from tpt.cli_support import load_settings as _settings
from tpt.errors import (
    DecisionRefused,
    TemporalUnreachable,
    TransferConflict,
    TransferError,
    TransferNotFound,
    TransferValidationError,
)
from tpt.messages import BackfillMechanism, BackfillStep, UsOutcome
from tpt.stages import Stage

if TYPE_CHECKING:
    from tpt.client import TransferClient
    from tpt.contract import TransferRequest
    from tpt.messages import TransferStatus
    from tpt.signing import Signer

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

TransferId = Annotated[str, typer.Argument(help="the transfer id, e.g. TPT-DE-2026-0001", show_default=False)]
RequestFile = Annotated[Path, typer.Argument(exists=True, dir_okay=False, show_default=False,
                                             help="the request: JSON, or YAML when named *.yaml / *.yml")]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON instead of text")]
KeyFile = Annotated[Path | None, typer.Option(
    "--key", envvar="TPT_SIGNING_KEY", dir_okay=False, show_default=False,
    help="your signing key file (`tpt keys generate`): the decision is signed with it")]
_EXIT_CODES: list[tuple[type[TransferError], int]] = [
    (TransferValidationError, EXIT_BAD_INPUT), (TransferConflict, EXIT_REFUSED), (DecisionRefused, EXIT_REFUSED),
    (TransferNotFound, EXIT_NOT_FOUND), (TemporalUnreachable, EXIT_UNREACHABLE),
]


# --- read commands ---------------------------------------------------------------------------------------

@ends_process
def submit(file: RequestFile) -> None:
    """Submit a transfer request (JSON or YAML).

    Submitting the same file again is harmless.
    A different request under the same transfer id is refused (exit 3).
    An invalid file exits 2 naming every field path, and starts nothing."""
    request = _guarded(lambda: _load(file))
    done = _call(lambda tpt: tpt.ensure_submitted(request))
    verb = "submitted" if done.created else "already submitted with this same request; nothing new started:"
    typer.echo(f"{verb} {request.transfer_id} ({request.donor} → {request.recipient}, "
               f"${request.total_value_usd:,.0f})")
    url = _settings().workflow_url(request.transfer_id)
    typer.echo(f"follow it with `tpt watch {request.transfer_id}` or at {url}")


@ends_process
def status(transfer_id: TransferId, as_json: AsJson = False) -> None:
    """The transfer's stage checklist: who signed, what is awaited, how it ended."""
    from tpt.transfer_view import checklist

    current = _call(lambda tpt: tpt.status(transfer_id))
    if as_json:
        typer.echo(current.model_dump_json(indent=2))
    else:
        _console().print(checklist(current))


@ends_process
def list_transfers(
    stage: Annotated[Stage | None, typer.Option(case_sensitive=False, help="only transfers in this stage")] = None,
    donor: Annotated[str | None, typer.Option(help="donor nation, e.g. DE")] = None,
    recipient: Annotated[str | None, typer.Option(help="recipient nation, e.g. UA")] = None,
    needs_attention: Annotated[bool | None, typer.Option(
        "--needs-attention/--no-needs-attention", help="only transfers (not) flagged for attention")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many, newest first")] = 50,
    as_json: AsJson = False,
) -> None:
    """Transfers from Temporal visibility, newest first (a second or so behind the workflows)."""
    from tpt.transfer_view import summary_lines

    found = _call(lambda tpt: tpt.list(stage=stage, donor=donor, recipient=recipient,
                                       needs_attention=needs_attention, limit=limit))
    if as_json:
        typer.echo(json.dumps([s.model_dump(mode="json") for s in found], indent=2))
    else:
        typer.echo("\n".join(summary_lines(found)))


@ends_process
def watch(transfer_id: TransferId, as_json: AsJson = False,
          interval: Annotated[float, typer.Option(min=0.1, help="seconds between polls")] = 0.5) -> None:
    """Follow a transfer until it ends: a live checklist on a terminal, one line per change otherwise."""
    if as_json:
        _call(lambda tpt: _follow(tpt, transfer_id, interval, lambda s: typer.echo(s.model_dump_json())))
    elif sys.stdout.isatty():
        _call(lambda tpt: _follow_live(tpt, transfer_id, interval))
    else:
        from tpt.transfer_view import change_line

        _call(lambda tpt: _follow(tpt, transfer_id, interval, lambda s: typer.echo(change_line(s, _now()))))


# --- decisions -------------------------------------------------------------------------------------------

@ends_process
def sign_off(
    transfer_id: TransferId,
    role: Annotated[str, typer.Option(help="the seat you sign for, e.g. MOD", show_default=False)],
    approve: Annotated[bool, typer.Option("--approve/--reject", help="approve, or reject (a veto)",
                                          show_default=False)],
    signer: Annotated[str | None, typer.Option(help="your actor id, e.g. de.bmvg.signer; default: your key's",
                                               show_default=False)] = None,
    key: KeyFile = None,
    comment: Annotated[str, typer.Option(help="reason, expected with --reject")] = "",
    nation: Annotated[str | None, typer.Option(help="your nation; default: the donor")] = None,
    digest: Annotated[str | None, typer.Option(help="the request digest you read; default: the current one")] = None,
) -> None:
    """Sign off (or veto) for the donor, bound to the request version you read."""
    from tpt.messages import SignOff

    signing = _signing_key(key)
    actor = _actor(signer, signing, "--signer")

    async def sign(tpt: TransferClient) -> TransferStatus:
        current = await tpt.status(transfer_id)
        return await tpt.sign_off(transfer_id, _build(
            SignOff, signer=actor, nation=nation or current.donor, role=role, approve=approve,
            request_digest=digest or current.request_digest, comment=comment), signer=signing)

    _report(_call(sign))


@ends_process
def decide(
    transfer_id: TransferId,
    office: Annotated[str, typer.Option(help="the office the transfer is routed to: PM_RSAT or PM_DDTC",
                                        show_default=False)],
    reviewer: Annotated[str | None, typer.Option(help="your actor id, e.g. pm.rsat.reviewer; default: your key's",
                                                 show_default=False)] = None,
    key: KeyFile = None,
    approve: Annotated[bool, typer.Option("--approve", help="consent")] = False,
    deny: Annotated[bool, typer.Option("--deny", help="refuse consent (ends the transfer)")] = False,
    return_: Annotated[bool, typer.Option("--return", help="return to the requester for amendment")] = False,
    proviso: Annotated[list[str] | None, typer.Option(help="a condition of consent; repeat for several")] = None,
    comment: Annotated[str, typer.Option(help="reasoning for the record")] = "",
) -> None:
    """The U.S. decision on the current request version: --approve, --deny or --return."""
    from tpt.messages import UsDecision

    chosen = [o for o, on in ((UsOutcome.APPROVE, approve), (UsOutcome.DENY, deny), (UsOutcome.RETURN, return_)) if on]
    if len(chosen) != 1:
        fail("choose exactly one of --approve, --deny and --return", EXIT_BAD_INPUT)
    signing = _signing_key(key)
    actor = _actor(reviewer, signing, "--reviewer")

    async def decide_on(tpt: TransferClient) -> TransferStatus:
        current = await tpt.status(transfer_id)
        return await tpt.us_decision(transfer_id, _build(
            UsDecision, reviewer=actor, office=office, outcome=chosen[0], provisos=proviso or [],
            request_digest=current.request_digest, comment=comment), signer=signing)

    _report(_call(decide_on))


@ends_process
def handover(
    transfer_id: TransferId,
    leg: Annotated[str, typer.Option(help="e.g. depot-to-hub, hub-to-border, border-to-unit", show_default=False)],
    from_party: Annotated[str, typer.Option("--from", help="the custodian handing over", show_default=False)],
    to_party: Annotated[str, typer.Option("--to", help="the party taking custody", show_default=False)],
    serial: Annotated[list[str] | None, typer.Option(help="an EEUM serial handed over; repeat for each")] = None,
) -> None:
    """Record a custody handover (by the party handing over)."""
    from tpt.messages import Handover

    record = _guarded(lambda: _build(Handover, leg=leg, from_party=from_party, to_party=to_party,
                                     serials=serial or []))
    shipment = _call(lambda tpt: tpt.record_handover(transfer_id, record))
    typer.echo(f"{transfer_id}: {leg} handed over to {to_party}; next leg: {shipment.next_leg or 'none, delivered'}")


@ends_process
def backfill(
    transfer_id: TransferId,
    step: Annotated[BackfillStep, typer.Option(case_sensitive=False, show_default=False)],
    reporter: Annotated[str, typer.Option(help="your actor id", show_default=False)],
    mechanism: Annotated[BackfillMechanism | None, typer.Option(case_sensitive=False,
                                                                help="with --step MECHANISM")] = None,
    reference: Annotated[str, typer.Option(help="the LOR / LOA reference, or a delivery note")] = "",
    quantity: Annotated[int, typer.Option(min=0, help="units replaced, with --step DELIVERY")] = 0,
) -> None:
    """Record a backfill step: MECHANISM, LETTER_OF_REQUEST, LETTER_OF_OFFER, then DELIVERY(s)."""
    from tpt.messages import BackfillRecord

    record = _guarded(lambda: _build(BackfillRecord, reporter=reporter, step=step, mechanism=mechanism,
                                     reference=reference, quantity=quantity))
    state = _call(lambda tpt: tpt.record_backfill(transfer_id, record))
    typer.echo(f"{transfer_id}: backfill {step.value} recorded; {state.replaced}/{state.required} units replaced")


@ends_process
def withdraw(transfer_id: TransferId,
             reason: Annotated[str, typer.Option(show_default=False)],
             actor: Annotated[str | None, typer.Option(help="the requester's actor id; default: your key's",
                                                       show_default=False)] = None,
             key: KeyFile = None) -> None:
    """Withdraw the request (the requester only; not once a shipment leg has left)."""
    from tpt.messages import Withdrawal

    signing = _signing_key(key)
    record = _guarded(lambda: _build(Withdrawal, actor=_actor(actor, signing, "--actor"), reason=reason))
    _report(_call(lambda tpt: tpt.withdraw(transfer_id, record, signer=signing)))


@ends_process
def amend(transfer_id: TransferId, file: RequestFile,
          reason: Annotated[str, typer.Option(show_default=False)],
          actor: Annotated[str | None, typer.Option(help="the requester's actor id; default: your key's",
                                                    show_default=False)] = None,
          key: KeyFile = None) -> None:
    """Replace the request with an amended version (voids the sign-offs given so far)."""
    from tpt.messages import Amendment

    signing = _signing_key(key)
    amendment = _guarded(lambda: _build(Amendment, actor=_actor(actor, signing, "--actor"), request=_load(file),
                                        reason=reason))
    _report(_call(lambda tpt: tpt.amend(transfer_id, amendment, signer=signing)))


@ends_process
def waive(transfer_id: TransferId,
          justification: Annotated[str, typer.Option(help="the written emergency justification",
                                                     show_default=False)],
          official: Annotated[str | None, typer.Option(help="the certifying official's actor id; default: your "
                                                            "key's", show_default=False)] = None,
          key: KeyFile = None) -> None:
    """Certify an emergency: ends the congressional review period early."""
    from tpt.messages import EmergencyWaiver

    signing = _signing_key(key)
    waiver = _guarded(lambda: _build(EmergencyWaiver, official=_actor(official, signing, "--official"),
                                     justification=justification))
    _report(_call(lambda tpt: tpt.emergency_waiver(transfer_id, waiver, signer=signing)))


@ends_process
def inventory(transfer_id: TransferId,
              serial: Annotated[list[str], typer.Option(help="a serial counted; repeat for each",
                                                        show_default=False)],
              inspector: Annotated[str | None, typer.Option(help="the inspector's actor id; default: your key's",
                                                            show_default=False)] = None,
              key: KeyFile = None) -> None:
    """Record the EEUM initial serial-number inventory after delivery."""
    from tpt.messages import EeumInventory

    signing = _signing_key(key)
    counted = _guarded(lambda: _build(EeumInventory, inspector=_actor(inspector, signing, "--inspector"),
                                      serials=serial))
    _report(_call(lambda tpt: tpt.record_eeum_inventory(transfer_id, counted, signer=signing)))


# --- plumbing --------------------------------------------------------------------------------------------

def _call(work: Callable[[TransferClient], Awaitable[T]]) -> T:
    """Connect, run `work`, and exit with the code of any SDK error."""
    from tpt.client import TransferClient

    async def go() -> T:
        settings = _settings()
        temporal_used()
        try:
            tpt = await TransferClient.connect(settings)
        except ValueError as err:  # a TLS setting that cannot be used
            raise TransferValidationError([("settings", str(err))]) from err
        return await work(tpt)

    return _guarded(lambda: asyncio.run(go()))


def _guarded(work: Callable[[], T]) -> T:
    try:
        return work()
    except TransferError as err:
        _exit(err)


def _exit(err: TransferError) -> NoReturn:
    code = next((c for kind, c in _EXIT_CODES if isinstance(err, kind)), EXIT_FAILED)
    if isinstance(err, TransferValidationError):
        fail(f"invalid input ({len(err.problems)} problem(s)); nothing was sent:\n  " + str(err).replace("\n", "\n  "),
             code)
    fail(str(err), code)


def _load(file: Path) -> TransferRequest:
    from tpt.request_file import load_request

    return load_request(file)


def _signing_key(path: Path | None) -> Signer | None:
    """The key file given with --key / TPT_SIGNING_KEY; exits 2 when it cannot be used."""
    if path is None:
        return None
    from tpt.signing import KeyFileError, Signer

    try:
        return Signer.load(path)
    except KeyFileError as err:
        _exit(TransferValidationError([("--key", str(err))]))


def _actor(given: str | None, signing: Signer | None, option: str) -> str:
    if given:
        return given
    if signing is not None:
        return signing.actor
    _exit(TransferValidationError([(option, "give your actor id, or --key with your key file (it names you)")]))


def _build(model: type[M], **fields: Any) -> M:
    try:
        return model(**fields)
    except ValidationError as err:
        raise TransferValidationError.from_pydantic(err) from err


async def _follow(tpt: TransferClient, transfer_id: str, interval: float, show: Callable[[TransferStatus], None]
                  ) -> None:
    async for current in tpt.watch(transfer_id, interval):
        show(current)


async def _follow_live(tpt: TransferClient, transfer_id: str, interval: float) -> None:
    from rich.live import Live

    from tpt.transfer_view import checklist

    with Live(console=_console(), auto_refresh=False) as live:
        async for current in tpt.watch(transfer_id, interval):
            live.update(checklist(current), refresh=True)


def _report(current: TransferStatus) -> None:
    from tpt.transfer_view import status_line

    typer.echo(f"{current.transfer_id}: {status_line(current)}")


def _console() -> Any:
    from rich.console import Console

    return Console()


def _now() -> datetime:
    return datetime.now(UTC)
