"""`tpt audit …`: read, verify, export, rebuild and report on the audit history."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import asyncpg
import typer

from tpt.audit import bundle, rebuild, reports
from tpt.audit.chain import verify_chain
from tpt.audit.store import AuditStore, connect_pool
from tpt.canonical import canonical_json
from tpt.cli_support import EXIT_BAD_INPUT, EXIT_NOT_FOUND, EXIT_REFUSED, audit_url, fail, load_settings, run
from tpt.stages import Stage

app = typer.Typer(no_args_is_help=True, help="The audit history: read, verify, export, rebuild, report.")
T = TypeVar("T")


@asynccontextmanager
async def _connection() -> AsyncIterator[asyncpg.Connection]:
    pool = await connect_pool(audit_url(load_settings()), 1, 1)
    try:
        async with pool.acquire() as conn:
            yield conn
    finally:
        await pool.close()


def _with_connection(work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    async def go() -> T:
        async with _connection() as conn:
            return await work(conn)

    result: T = run(go())
    return result


def _history(transfer_id: str) -> list[Any]:
    async def read() -> list[Any]:
        async with AuditStore.open(audit_url(load_settings()), 1, 2) as store:
            return await store.history(transfer_id)

    events: list[Any] = run(read())
    if not events:
        fail(f"no audit events for {transfer_id}", EXIT_NOT_FOUND)
    return events


@app.command("history")
def history(transfer_id: str, as_json: bool = typer.Option(False, "--json", help="JSON Lines")) -> None:
    """The audit timeline of one transfer."""
    for event in _history(transfer_id):
        if as_json:
            typer.echo(event.model_dump_json())
        else:
            typer.echo(f"#{event.seq:<3} {event.workflow_time:%Y-%m-%d %H:%M:%S} {event.stage.value:<14} "
                       f"{event.event_type:<20} {event.actor} ({event.role})")


@app.command("verify")
def verify(transfer_id: str | None = typer.Argument(None, help="one transfer; all when omitted")) -> None:
    """Recompute hash chains; exit 1 naming the first broken event of each broken chain."""

    async def check() -> Any:
        async with AuditStore.open(audit_url(load_settings()), 1, 2) as store:
            return await store.verify(transfer_id)

    checked, breaks = run(check())
    for broken in breaks:
        typer.secho(f"BROKEN {broken}", fg="red", err=True)
    if breaks:
        raise typer.Exit(1)
    typer.echo(f"ok: {checked} event(s) verified")


@app.command("export")
def export(
    transfer_id: str,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="default: stdout")] = None,
) -> None:
    """One transfer's history as a JSON Lines bundle (events, then a trailer with the head hash)."""
    events = _history(transfer_id)
    data = bundle.export(events)
    if output is None:
        stdout = typer.get_binary_stream("stdout")
        stdout.write(data)  # the bytes themselves: any re-encoding on the way would break the bundle
        stdout.flush()
    else:
        output.write_bytes(data)
        typer.echo(f"exported {len(events)} event(s) of {transfer_id} to {output}; head hash {events[-1].hash}",
                   err=True)
    broken = verify_chain(events)
    if broken:  # written all the same: the evidence is what the database holds
        fail(f"the stored chain is broken, so the bundle will not verify: {broken}")


@app.command("verify-bundle")
def verify_bundle(
    file: Path,
    keys: Annotated[Path | None, typer.Option(
        "--keys", dir_okay=False, help="the signer registry's keys (`tpt keys list --json`): signing keys must be "
                                       "registered ones")] = None,
) -> None:
    """Check an exported bundle offline (no database): every hash, link and decision signature. Exit 1 if it was
    altered, 2 if it is not a bundle."""
    try:
        trusted = bundle.trusted_keys(keys.read_bytes()) if keys else None
        summary = bundle.verify(file.read_bytes(), trusted)
    except OSError as err:
        fail(f"cannot read {err.filename or file}: {err.strerror}", EXIT_BAD_INPUT)
    except ValueError as err:
        fail(f"{keys}: {err}", EXIT_BAD_INPUT)
    except bundle.MalformedBundle as err:
        fail(f"{file}: malformed bundle at {err}", EXIT_BAD_INPUT)
    except bundle.BrokenBundle as err:
        fail(f"{file}: BROKEN at {err}")
    typer.echo(f"ok: {summary.events} event(s) of {summary.transfer_id} verified; "
               f"head hash {summary.head_hash} (bundle v{summary.version})")
    typer.echo(f"ok: {summary.signatures} signed decision(s), every signature verified"
               + (" with a registered key" if trusted is not None else
                  " with the key its event recorded (give --keys to check those against the signer registry)"))


@app.command("rebuild")
def rebuild_projection(
    apply: bool = typer.Option(False, "--apply", help="rewrite the differing rows (needs the admin URL)"),
) -> None:
    """Recompute the transfers projection from the events alone; exit 1 if the stored one differs."""
    try:
        found = _with_connection(rebuild.apply if apply else rebuild.check)
    except rebuild.NeedsOwner as err:
        fail(str(err), EXIT_REFUSED)
    for difference in found:
        typer.echo(str(difference))
    transfers = len({d.transfer_id for d in found})
    if apply:
        typer.echo(f"rewrote {transfers} transfer row(s); the projection now matches the events")
    elif found:
        fail(f"{len(found)} difference(s) in {transfers} transfer(s); `tpt audit rebuild --apply` rewrites them")
    else:
        typer.echo("ok: the projection matches the events")


@app.command("transfers")
def list_transfers(
    stage: Annotated[Stage | None, typer.Option("--stage", case_sensitive=False)] = None,
    donor: str | None = typer.Option(None, "--donor", help="ISO 3166 alpha-2 code, e.g. DE"),
    older_than: float | None = typer.Option(None, "--older-than", min=0, help="requested more than DAYS ago"),
    as_json: bool = typer.Option(False, "--json", help="JSON Lines"),
) -> None:
    """Transfers by stage, donor and age (from the projection), oldest first."""
    age = timedelta(days=older_than) if older_than is not None else None
    lines = _with_connection(lambda conn: reports.transfers(
        conn, datetime.now(UTC), stage.value if stage else None, donor.upper() if donor else None, age))
    for line in lines:
        if as_json:
            typer.echo(canonical_json(dataclasses.asdict(line)).decode())
        else:
            typer.echo(f"{line.transfer_id:<24} {line.stage:<20} {line.donor or '-':<3} → {line.recipient or '-':<3} "
                       f"{_usd(line.total_value_usd):>16}  age {line.age_days:>7.2f} d  "
                       f"in stage {line.in_stage_days:>7.2f} d{'  NEEDS ATTENTION' if line.needs_attention else ''}")
    if not as_json:
        typer.echo(f"{len(lines)} transfer(s)", err=True)


@app.command("sla")
def sla(as_json: bool = typer.Option(False, "--json", help="one JSON document")) -> None:
    """Time spent in each stage: visits, median, p90 and max (open stages counted up to now)."""
    now = datetime.now(UTC)
    times = _with_connection(lambda conn: reports.stage_times(conn, now))
    if as_json:
        typer.echo(json.dumps({"now": now.isoformat(), "stages": [dataclasses.asdict(t) for t in times]}))
        return
    typer.echo(f"{'STAGE':<22}{'VISITS':>7}{'OPEN':>6}{'MEDIAN':>14}{'P90':>14}{'MAX':>14}")
    for t in times:
        typer.echo(f"{t.stage:<22}{t.count:>7}{t.open:>6}{_span(t.median_seconds):>14}"
                   f"{_span(t.p90_seconds):>14}{_span(t.max_seconds):>14}")


def _usd(value: Any) -> str:
    return f"${value:,.2f}" if value is not None else "-"


def _span(seconds: float) -> str:
    days, rest = divmod(int(round(seconds)), 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days}d {hours:02}:{rest // 60:02}:{rest % 60:02}"
