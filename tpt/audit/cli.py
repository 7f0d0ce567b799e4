"""`tpt audit …`: read and verify the audit history."""

from __future__ import annotations

from typing import Any

import typer

from tpt.audit.store import AuditStore
from tpt.cli_support import EXIT_NOT_FOUND, audit_url, fail, load_settings, run

app = typer.Typer(no_args_is_help=True, help="The audit history: read and verify it.")


@app.command("history")
def history(transfer_id: str, as_json: bool = typer.Option(False, "--json", help="JSON Lines")) -> None:
    """The audit timeline of one transfer."""

    async def read() -> list[Any]:
        async with AuditStore.open(audit_url(load_settings()), 1, 2) as store:
            return await store.history(transfer_id)

    events = run(read())
    if not events:
        fail(f"no audit events for {transfer_id}", EXIT_NOT_FOUND)
    for event in events:
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
