"""The `tpt` command: the root and the stack commands; each domain adds its own sub-commands."""

from __future__ import annotations

import os
import sys

import typer

from tpt import transfer_cli
from tpt.audit.cli import app as audit_app
from tpt.bench.cli import app as bench_app
from tpt.cli_support import EXIT_BAD_INPUT, fail, load_settings, run
from tpt.codec import cli as codec_cli
from tpt.keys.cli import app as keys_app
from tpt.ops.cli import app as ops_app

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Authorize and track third-party transfers to Ukraine.")
db_app = typer.Typer(no_args_is_help=True, help="The audit database.")
app.add_typer(db_app, name="db")
app.add_typer(audit_app, name="audit")
app.add_typer(bench_app, name="bench")
app.add_typer(ops_app, name="ops")
app.add_typer(codec_cli.app, name="codec")
app.add_typer(keys_app, name="keys")
app.command("codec-server")(codec_cli.codec_server)
# Transfers: submit and follow them, send the decisions (exit codes in tpt/transfer_cli.py).
app.command("submit")(transfer_cli.submit)
app.command("status")(transfer_cli.status)
app.command("list")(transfer_cli.list_transfers)
app.command("watch")(transfer_cli.watch)
app.command("sign-off")(transfer_cli.sign_off)
app.command("decide")(transfer_cli.decide)
app.command("handover")(transfer_cli.handover)
app.command("backfill")(transfer_cli.backfill)
app.command("withdraw")(transfer_cli.withdraw)
app.command("amend")(transfer_cli.amend)
app.command("waive")(transfer_cli.waive)
app.command("inventory")(transfer_cli.inventory)


@app.command()
def dev(demo: bool = typer.Option(False, help="Submit a demo transfer and drive it to completion.")) -> None:
    """Start Temporal, Postgres and a worker on this machine; Ctrl-C stops them all."""
    from tpt.devstack.stack import run_dev

    settings = load_settings()
    on_ready = None
    if demo:
        from tpt.demo import run_demo

        on_ready = run_demo
    run(run_dev(settings, on_ready))


@app.command()
def worker() -> None:
    """Run a worker against an existing Temporal server and audit database (TPT_WORKER_DATABASE_URL)."""
    from workers.main import run_worker

    settings = load_settings()
    if not (settings.worker_database_url or settings.database_url):
        fail("neither TPT_WORKER_DATABASE_URL nor TPT_DATABASE_URL is set: a standalone worker needs the audit "
             "database's URL", EXIT_BAD_INPUT)
    run(run_worker(settings))


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply pending migrations to TPT_DATABASE_URL (idempotent)."""
    from tpt.database import apply_migrations

    settings = load_settings()
    if not settings.database_url:
        fail("TPT_DATABASE_URL is not set (`tpt dev` migrates its embedded database itself)", EXIT_BAD_INPUT)
    applied = run(apply_migrations(settings.database_url))
    typer.echo(f"{applied} migration(s) applied; schema is current")


def main() -> None:
    """Run a command, then end the process at once: a Temporal client's threads can abort interpreter
    teardown ("PyGILState_Release", temporalio/sdk-python#300), turning a clean exit into a crash."""
    code: int = 0
    try:
        app()
    except SystemExit as done:
        if isinstance(done.code, str):
            print(done.code, file=sys.stderr)
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except KeyboardInterrupt:
        code = 130
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
