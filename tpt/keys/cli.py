"""`tpt keys generate|add|revoke|list|refresh`: signing keys and the signer registry.

`generate` makes a person's key file (private: it stays with them) and prints the public key. `add`, `revoke` and
`list` change or read the registry with the audit database owner's URL (TPT_DATABASE_URL; `tpt dev`'s embedded
database when unset); the worker's role can only read it. A transfer loads the registry when each stage starts:
`refresh` (and `revoke`, unless told not to) makes running transfers load it again at once.
"""

from __future__ import annotations

import asyncio
import getpass
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from tpt.cli_support import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_REFUSED, audit_url, fail, load_settings, run
from tpt.keys.store import KeyRegistryError
from tpt.signing import OPERATOR, KeyFileError, KeyRegistration, Signer, SignerKey

app = typer.Typer(no_args_is_help=True, help="Signing keys and the signer registry (who may sign which decision).")
T = TypeVar("T")

Actor = Annotated[str, typer.Option(help="the key holder's actor id, e.g. de.bmvg.signer", show_default=False)]


def _with_db(work: Callable[[Any], Awaitable[T]]) -> T:
    import asyncpg

    async def go() -> T:
        conn = await asyncpg.connect(audit_url(load_settings()))
        try:
            return await work(conn)
        finally:
            await conn.close()

    try:
        result: T = run(go())
    except KeyRegistryError as err:
        fail(str(err), EXIT_REFUSED)
    except Exception as err:  # asyncpg's refusals (e.g. the worker's role may not write the registry)
        if type(err).__module__.startswith("asyncpg"):
            fail(f"the signer registry refused: {err} (use the database owner's TPT_DATABASE_URL)", EXIT_REFUSED)
        raise
    return result


def _public_key_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        fail(f"cannot read {path}: {err}", EXIT_BAD_INPUT)
    if not isinstance(data, dict):
        fail(f"{path} is not a public key file", EXIT_BAD_INPUT)
    return data


@app.command("generate")
def generate(
    actor: Actor,
    out: Annotated[Path | None, typer.Option("--out", "-o", dir_okay=False,
                                             help="key file to write; default: <state dir>/keys/<actor>.key")] = None,
) -> None:
    """Make a key pair: the private key file (mode 0600, keep it to yourself) and `<file>.pub` to register."""
    path = out or load_settings().state_dir / "keys" / f"{actor}.key"
    signer = Signer.generate(actor)
    try:
        signer.save(path)
    except FileExistsError:
        fail(f"{path} exists: a key file is never overwritten; choose another --out", EXIT_BAD_INPUT)
    public = path.with_name(path.name + ".pub")
    public.write_text(json.dumps({"actor": actor, "key_id": signer.key_id, "public_key": signer.public_key},
                                 indent=2) + "\n", encoding="utf-8")
    typer.echo(f"key {signer.key_id} of {actor}: private key {path} (keep it), public key {public}")
    typer.echo(f"an administrator registers it: tpt keys add {public} --nation NATION --role ROLE")


@app.command("add")
def add(
    source: Annotated[Path | None, typer.Argument(
        dir_okay=False, exists=True, show_default=False,
        help="a public key file (<key>.pub from `tpt keys generate`), or the key file itself")] = None,
    nation: Annotated[str, typer.Option(help="the nation it signs for: DE, PL… (US for U.S. parties)",
                                        show_default=False)] = "",
    role: Annotated[str, typer.Option(help=f"the seat (MOD, BAFA…), the office (PM_RSAT, PM_DDTC), or requester, "
                                           f"waiver_official, congressional_liaison, eeum_inspector, {OPERATOR}",
                                      show_default=False)] = "",
    actor: Annotated[str | None, typer.Option(help="with --public-key: the holder's actor id")] = None,
    public_key: Annotated[str | None, typer.Option(help="the raw Ed25519 public key, base64")] = None,
    valid_from: Annotated[datetime | None, typer.Option(help="default: now (UTC unless an offset is given)")] = None,
    valid_until: Annotated[datetime | None, typer.Option(help="when the key stops signing; default: never")] = None,
    valid_days: Annotated[float | None, typer.Option(min=0, help="or: valid this many days from valid-from")] = None,
    added_by: Annotated[str | None, typer.Option(help="who registers it; default: your login")] = None,
) -> None:
    """Register a public key for an actor, nation and role (idempotent)."""
    if source is not None:
        if source.suffix == ".pub":
            data = _public_key_file(source)
            actor, public_key = actor or data.get("actor"), public_key or data.get("public_key")
        else:
            try:
                signer = Signer.load(source)
            except KeyFileError as err:
                fail(str(err), EXIT_BAD_INPUT)
            actor, public_key = actor or signer.actor, signer.public_key
    if not (actor and public_key and nation and role):
        fail("give the key (a .pub file, a key file, or --actor with --public-key), --nation and --role",
             EXIT_BAD_INPUT)
    try:
        registration = KeyRegistration.from_public_key(actor, nation.upper(), role, public_key)
    except ValueError as err:
        fail(f"invalid key: {err}", EXIT_BAD_INPUT)
    start = _utc(valid_from)
    end = _utc(valid_until) or ((start or datetime.now(UTC)) + timedelta(days=valid_days) if valid_days else None)
    from tpt.keys import store

    key, added = _with_db(lambda conn: store.add(conn, registration, added_by=added_by or getpass.getuser(),
                                                 valid_from=start, valid_until=end))
    verb = "registered" if added else "already registered (nothing changed):"
    until = f" until {key.valid_until:%Y-%m-%d %H:%M} UTC" if key.valid_until else ""
    typer.echo(f"{verb} key {key.key_id} of {key.actor} for {key.role} of {key.nation}, valid from "
               f"{key.valid_from:%Y-%m-%d %H:%M} UTC{until}")
    typer.echo("running transfers use it from their next stage, or at once after `tpt keys refresh`")


@app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="the key's id (`tpt keys list`)", show_default=False)],
    reason: Annotated[str, typer.Option(help="why, for the record", show_default=False)],
    by: Annotated[str | None, typer.Option(help="who revokes it; default: your login")] = None,
    refresh: Annotated[bool, typer.Option(
        "--refresh/--no-refresh", help="make the running transfers that could use the key reload the registry now")
    ] = True,
) -> None:
    """Revoke a key for good: no decision signed with it is accepted from now on."""
    from tpt.keys import store

    key = _with_db(lambda conn: store.revoke(conn, key_id, by=by or getpass.getuser(), reason=reason))
    typer.echo(f"revoked key {key.key_id} of {key.actor} ({key.role} of {key.nation}) at "
               f"{key.revoked_at:%Y-%m-%d %H:%M:%S} UTC")
    if refresh:
        _refresh_running(None if key.nation == "US" or key.role == OPERATOR else key.nation, [])


@app.command("list")
def list_keys(
    actor: Annotated[str | None, typer.Option(help="only this holder's keys")] = None,
    nation: Annotated[str | None, typer.Option(help="only keys of this nation")] = None,
    role: Annotated[str | None, typer.Option(help="only keys for this role")] = None,
    active: Annotated[bool, typer.Option("--active", help="only keys that can sign now")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON (the trusted-keys file of `tpt audit "
                                                         "verify-bundle --keys`)")] = False,
) -> None:
    """The registered keys: holder, nation, role, validity, revocation."""
    from tpt.keys import store

    keys: list[SignerKey] = _with_db(lambda conn: store.list_keys(
        conn, actor=actor, nation=nation.upper() if nation else None, role=role, active_only=active))
    if as_json:
        typer.echo(json.dumps([k.model_dump(mode="json") for k in keys], indent=1))
        return
    for k in keys:
        state = (f"REVOKED {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at
                 else f"until {k.valid_until:%Y-%m-%d %H:%M}" if k.valid_until else "no expiry")
        typer.echo(f"{k.key_id}  {k.nation:<5} {k.role:<22} {k.actor:<32} from {k.valid_from:%Y-%m-%d %H:%M}  {state}")
    typer.echo(f"{len(keys)} key(s)", err=True)


@app.command("refresh")
def refresh(
    transfer_ids: Annotated[list[str] | None, typer.Argument(help="these transfers; with none, --all is needed",
                                                             show_default=False)] = None,
    all_running: Annotated[bool, typer.Option("--all", help="every running transfer")] = False,
    donor: Annotated[str | None, typer.Option(help="with --all: only transfers of this donor")] = None,
) -> None:
    """Make running transfers reload the signer registry now (they do at every stage start anyway)."""
    if not transfer_ids and not all_running:
        fail("name the transfers, or give --all", EXIT_BAD_INPUT)
    if not _refresh_running(donor.upper() if donor else None, [] if all_running else list(transfer_ids or [])):
        raise typer.Exit(EXIT_FAILED)


def _refresh_running(donor: str | None, transfer_ids: list[str]) -> bool:
    """Send `refresh_signers` to the transfers (all running ones of `donor`, or every one, when none are named)."""
    from tpt.client import TransferClient
    from tpt.errors import TransferError

    async def go() -> tuple[int, list[str]]:
        tpt = await TransferClient.connect(load_settings())
        try:
            targets = transfer_ids or [
                s.transfer_id for s in await tpt.list(donor=donor, limit=10_000)
                if s.stage is not None and not s.stage.is_terminal]
            problems = []
            for tid in targets:
                try:
                    await tpt.refresh_signers(tid)
                except TransferError as err:
                    problems.append(f"{tid}: {err}")
            return len(targets) - len(problems), problems
        finally:
            await tpt.close()

    try:
        done, problems = asyncio.run(go())
    except Exception as err:  # Temporal unreachable: the registry change stands; transfers pick it up later
        typer.secho(f"warning: could not refresh running transfers ({err}); each reloads the registry at its next "
                    "stage, or run `tpt keys refresh --all` when Temporal is back", fg="yellow", err=True)
        return False
    for problem in problems:
        typer.secho(f"warning: {problem}", fg="yellow", err=True)
    typer.echo(f"{done} running transfer(s) reloaded the signer registry")
    return not problems


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
