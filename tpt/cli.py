"""The `tpt` command."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, NoReturn

import typer

from tpt import logging as tpt_logging
from tpt.settings import Settings

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Authorize and track third-party transfers to Ukraine.")
db_app = typer.Typer(no_args_is_help=True, help="The audit database.")
audit_app = typer.Typer(no_args_is_help=True, help="The audit history: read and verify it.")
app.add_typer(db_app, name="db")
app.add_typer(audit_app, name="audit")

EXIT_BAD_INPUT, EXIT_ENVIRONMENT = 2, 1


def _settings() -> Settings:
    settings = Settings()
    tpt_logging.configure(settings.log_format, settings.log_level)
    return settings


def _fail(message: str, code: int = EXIT_ENVIRONMENT) -> NoReturn:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    import asyncpg

    from tpt.devstack.processes import StackError
    from tpt.migrations import MigrationError

    try:
        return asyncio.run(coro)
    except (StackError, MigrationError) as err:
        _fail(str(err))
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.InvalidCatalogNameError) as err:
        _fail(f"cannot reach the audit database ({err}): start the stack with `tpt dev`, "
              "or point TPT_DATABASE_URL at a running Postgres")


@app.command()
def dev(demo: bool = typer.Option(False, help="Submit a demo transfer and drive it to completion.")) -> None:
    """Start Temporal, Postgres and a worker on this machine; Ctrl-C stops them all."""
    from tpt.devstack.stack import run_dev

    settings = _settings()
    on_ready = None
    if demo:
        from tpt.demo import run_demo

        on_ready = run_demo
    _run(run_dev(settings, on_ready))


@app.command()
def worker() -> None:
    """Run a worker against an existing Temporal server and audit database (TPT_DATABASE_URL)."""
    from workers.main import run_worker

    settings = _settings()
    if not settings.database_url:
        _fail("TPT_DATABASE_URL is not set: a standalone worker needs the audit database's URL", EXIT_BAD_INPUT)
    _run(run_worker(settings))


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply pending migrations to TPT_DATABASE_URL (idempotent)."""
    from tpt.database import apply_migrations

    settings = _settings()
    if not settings.database_url:
        _fail("TPT_DATABASE_URL is not set (`tpt dev` migrates its embedded database itself)", EXIT_BAD_INPUT)
    applied = _run(apply_migrations(settings.database_url))
    typer.echo(f"{applied} migration(s) applied; schema is current")


def _audit_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    from tpt.devstack.stack import DATABASE

    return f"postgresql://postgres@127.0.0.1:{settings.embedded_pg_port}/{DATABASE}"


@audit_app.command("history")
def audit_history(transfer_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """The audit timeline of one transfer."""
    from tpt.audit.store import AuditStore

    async def read() -> list[Any]:
        async with AuditStore.open(_audit_url(_settings()), 1, 2) as store:
            return await store.history(transfer_id)

    events = _run(read())
    if not events:
        _fail(f"no audit events for {transfer_id}", 4)
    for event in events:
        if as_json:
            typer.echo(event.model_dump_json())
        else:
            typer.echo(f"#{event.seq:<3} {event.workflow_time:%Y-%m-%d %H:%M:%S} {event.stage.value:<14} "
                       f"{event.event_type:<20} {event.actor} ({event.role})")


@audit_app.command("verify")
def audit_verify(transfer_id: str | None = typer.Argument(None)) -> None:
    """Recompute hash chains (one transfer, or all); exit 1 naming the first broken event."""
    from tpt.audit.store import AuditStore

    async def check() -> Any:
        async with AuditStore.open(_audit_url(_settings()), 1, 2) as store:
            return await store.verify(transfer_id)

    checked, breaks = _run(check())
    for broken in breaks:
        typer.secho(f"BROKEN {broken}", fg="red", err=True)
    if breaks:
        raise typer.Exit(1)
    typer.echo(f"ok: {checked} event(s) verified")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
