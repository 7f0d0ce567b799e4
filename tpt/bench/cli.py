"""`tpt bench …`: measurements run by hand against a scratch database, never part of the test suite."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tpt import logging as tpt_logging
from tpt.bench.audit import Config, Result, run_bench
from tpt.cli_support import load_settings, run

app = typer.Typer(no_args_is_help=True, help="Benchmarks against a scratch database (dropped afterwards).")


@app.command("audit")
def audit(
    events: int = typer.Option(2000, "--events", min=1, help="events appended in all"),
    transfers: int = typer.Option(20, "--transfers", min=1, help="transfers (chains) they are spread over"),
    concurrency: int = typer.Option(10, "--concurrency", min=1, help="concurrent writers (and connections)"),
    json_file: Annotated[Path | None, typer.Option("--json", help="also write the figures here")] = None,
) -> None:
    """Appends/s through AuditStore.append against plain INSERTs of the same rows, in the same run."""
    settings = load_settings()
    tpt_logging.configure(settings.log_format, "WARNING")  # the scratch database's migration logs are noise here
    result: Result = run(run_bench(settings, Config(events, transfers, concurrency)))
    _print(result)
    if json_file is not None:
        json_file.write_text(json.dumps(result.as_dict(), indent=2) + "\n")
    if result.chain_breaks:
        typer.secho(f"error: {result.chain_breaks} broken chain(s) after the run", fg="red", err=True)
        raise typer.Exit(1)


def _print(r: Result) -> None:
    c = r.config
    typer.echo(f"audit append benchmark: {c.events} events over {c.transfers} transfers, "
               f"{c.concurrency} concurrent writers")
    typer.echo(f"server: {r.server}; scratch database {r.database} (dropped)")
    typer.echo("")
    typer.echo(f"{'path':<44}{'events':>8}{'seconds':>10}{'events/s':>11}")
    for label, rate in (("AuditStore.append (chain, projection, idem.)", r.chained),
                        ("plain INSERT, same rows (copy table)", r.plain)):
        typer.echo(f"{label:<44}{rate.events:>8}{rate.seconds:>10.3f}{rate.per_second:>11.0f}")
    typer.echo(f"ratio chained/plain: {r.ratio:.2f}")
    typer.echo(f"chains verified afterwards: {r.verified_events} events, {r.chain_breaks} broken")
