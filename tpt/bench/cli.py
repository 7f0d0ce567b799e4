"""`tpt bench …`: measurements run by hand against a scratch database, never part of the test suite."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from tpt import logging as tpt_logging
from tpt.bench import latency as latency_bench
from tpt.bench import scale as scale_bench
from tpt.bench import throughput as throughput_bench
from tpt.bench.audit import Config, Result, run_bench
from tpt.bench.summary import summary_rows, summary_table
from tpt.cli_support import load_settings, run
from tpt.settings import Settings

app = typer.Typer(invoke_without_command=True,
                  help="Benchmarks on a scratch stack (dev server, database), all dropped afterwards. "
                       "Without a sub-command: every scenario at its default size, and one table against the targets.")

JsonFile = Annotated[Path | None, typer.Option("--json", help="also write the figures here")]
# Default sizes: the whole of `tpt bench` in under 10 minutes on a 2-core machine (see README, "Benchmark").
THROUGHPUT_TRANSFERS, THROUGHPUT_CONCURRENCY = 30, 15
LATENCY_SAMPLES, LATENCY_BACKGROUND = 50, 2
AUDIT_EVENTS, AUDIT_TRANSFERS, AUDIT_CONCURRENCY = 6000, 20, 10


def _settings() -> Settings:
    settings = load_settings()
    tpt_logging.configure(settings.log_format, "WARNING")  # migration and worker logs are noise here
    return settings


def _write(json_file: Path | None, figures: dict[str, Any]) -> None:
    if json_file is not None:
        json_file.write_text(json.dumps(figures, indent=2, default=str) + "\n")


@app.callback()
def everything(ctx: typer.Context, json_file: JsonFile = None) -> None:
    """Without a sub-command: `tpt bench all`."""
    if ctx.invoked_subcommand is None:
        all_(json_file)


@app.command("all")
def all_(json_file: JsonFile = None) -> None:
    """Every scenario at its default size, each beside its baseline, then one table against the issue's targets."""
    settings = _settings()
    started = time.perf_counter()
    figures: dict[str, Any] = {}
    tp = run(throughput_bench.run_throughput(settings, THROUGHPUT_TRANSFERS, THROUGHPUT_CONCURRENCY))
    throughput_bench.report(tp, typer.echo)
    typer.echo("")
    lat = run(latency_bench.run_latency(settings, LATENCY_SAMPLES, LATENCY_BACKGROUND))
    latency_bench.report(lat, typer.echo)
    typer.echo("")
    audit_result: Result = run(run_bench(settings, Config(AUDIT_EVENTS, AUDIT_TRANSFERS, AUDIT_CONCURRENCY)))
    _print(audit_result)
    typer.echo("")
    sc = run(scale_bench.run_scale(settings, scale_bench.DEFAULT_OPEN))
    scale_bench.report(sc, typer.echo)
    typer.echo("")
    rows = summary_rows(tp, lat, audit_result, sc)
    elapsed = time.perf_counter() - started
    for line in summary_table(rows):
        typer.echo(line)
    typer.echo(f"total {elapsed:.0f} s")
    figures = {"throughput": tp.as_dict(), "latency": lat.as_dict(), "audit": audit_result.as_dict(),
               "scale": sc.as_dict(), "summary": rows, "seconds": elapsed}
    _write(json_file, figures)


@app.command("throughput")
def throughput(
    transfers: int = typer.Option(THROUGHPUT_TRANSFERS, "--transfers", min=1, help="transfers (and bare workflows)"),
    concurrency: int = typer.Option(THROUGHPUT_CONCURRENCY, "--concurrency", min=1, help="driven at once"),
    json_file: JsonFile = None,
) -> None:
    """Transfers/s through the whole fast-track lifecycle against bare workflows with the same commands."""
    result = run(throughput_bench.run_throughput(_settings(), transfers, concurrency))
    throughput_bench.report(result, typer.echo)
    _write(json_file, result.as_dict())


@app.command("latency")
def latency(
    samples: int = typer.Option(LATENCY_SAMPLES, "--samples", min=1, help="decisions measured"),
    background: int = typer.Option(LATENCY_BACKGROUND, "--background", min=0,
                                   help="transfers driven through their lifecycle meanwhile, continuously"),
    json_file: JsonFile = None,
) -> None:
    """Decision returned → new stage visible (search attribute and audit row) against a bare update round trip."""
    result = run(latency_bench.run_latency(_settings(), samples, background))
    latency_bench.report(result, typer.echo)
    _write(json_file, result.as_dict())


@app.command("scale")
def scale(
    open_: int = typer.Option(scale_bench.DEFAULT_OPEN, "--open", min=1, help="transfers opened and left waiting"),
    json_file: JsonFile = None,
) -> None:
    """Worker RSS with N transfers waiting for sign-off; a killed and restarted worker's time to serve a decision."""
    result = run(scale_bench.run_scale(_settings(), open_))
    scale_bench.report(result, typer.echo)
    _write(json_file, result.as_dict())


@app.command("audit")
def audit(
    events: int = typer.Option(AUDIT_EVENTS, "--events", min=1, help="events appended in all"),
    transfers: int = typer.Option(AUDIT_TRANSFERS, "--transfers", min=1,
                                  help="transfers (chains) they are spread over"),
    concurrency: int = typer.Option(AUDIT_CONCURRENCY, "--concurrency", min=1,
                                    help="concurrent writers (and pool connections), both paths"),
    json_file: JsonFile = None,
) -> None:
    """Appends/s through AuditStore.append against plain INSERTs of the same rows, in the same run."""
    result: Result = run(run_bench(_settings(), Config(events, transfers, concurrency)))
    _print(result)
    _write(json_file, result.as_dict())
    if result.chain_breaks:
        typer.secho(f"error: {result.chain_breaks} broken chain(s) after the run", fg="red", err=True)
        raise typer.Exit(1)


def _print(r: Result) -> None:
    c = r.config
    typer.echo(f"audit append benchmark: {c.events} events over {c.transfers} transfers, "
               f"{c.concurrency} concurrent writers on one pool of {c.concurrency} connections, both paths")
    typer.echo(f"server: {r.server}; scratch database {r.database} (dropped)")
    typer.echo("")
    typer.echo(f"{'path':<44}{'events':>8}{'seconds':>10}{'events/s':>11}")
    for label, rate in (("AuditStore.append (chain, projection, idem.)", r.chained),
                        ("plain INSERT, same rows (copy table)", r.plain)):
        typer.echo(f"{label:<44}{rate.events:>8}{rate.seconds:>10.3f}{rate.per_second:>11.0f}")
    typer.echo(f"ratio chained/plain: {r.ratio:.2f}")
    typer.echo(f"chains verified afterwards: {r.verified_events} events, {r.chain_breaks} broken")
