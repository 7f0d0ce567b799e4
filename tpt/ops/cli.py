"""`tpt ops …`: find stuck transfers; retry or skip their stuck step, with the operator's name and reason."""

from __future__ import annotations

import asyncio
import json

import typer

from tpt.cli_support import EXIT_NOT_FOUND, EXIT_REFUSED, fail, load_settings
from tpt.messages import OpsAction
from tpt.ops.client import NothingStuck, OpsClient, OpsRefused, StuckTransfer

app = typer.Typer(no_args_is_help=True, help="Operations: find stuck transfers and set them moving again.")


async def _ops() -> OpsClient:
    from tpt.client import connect

    return OpsClient(await connect(load_settings()))


@app.command("stuck")
def stuck(query: str | None = typer.Option(None, "--query", help="narrow by a visibility query"),
          as_json: bool = typer.Option(False, "--json")) -> None:
    """Every transfer whose step waits for an operator: stage, step, reason, since when."""

    async def find() -> list[StuckTransfer]:
        return await (await _ops()).stuck(query)

    found = asyncio.run(find())
    if as_json:
        typer.echo(json.dumps([s.model_dump(mode="json") for s in found], indent=1))
        return
    if not found:
        typer.echo("nothing is stuck")
    for s in found:
        since = f"{s.since:%Y-%m-%d %H:%M}" if s.since else "?"
        typer.echo(f"{s.transfer_id}  {s.stage or '?':<14} since {since}  {s.step or '?'}"
                   f"{' (irreversible)' if s.irreversible else ''}: {s.reason}")


def _act(verb: str, transfer_id: str, operator: str, reason: str) -> None:
    async def send() -> str:
        ops = await _ops()
        action = OpsAction(operator=operator, reason=reason)
        step = await (ops.retry if verb == "retry" else ops.skip)(transfer_id, action)
        return step.step

    try:
        step = asyncio.run(send())
    except NothingStuck as err:
        fail(str(err), EXIT_NOT_FOUND)
    except OpsRefused as err:
        fail(f"refused: {err}", EXIT_REFUSED)
    typer.echo(f"{verb} of '{step}' for {transfer_id} recorded (operator {operator})")


@app.command("retry")
def retry(transfer_id: str, operator: str = typer.Option(..., help="who you are; goes on the audit record"),
          reason: str = typer.Option(..., help="why the step can run now")) -> None:
    """Run the stuck step again."""
    _act("retry", transfer_id, operator, reason)


@app.command("skip")
def skip(transfer_id: str, operator: str = typer.Option(..., help="who you are; goes on the audit record"),
         reason: str = typer.Option(..., help="why the step may be left undone")) -> None:
    """Leave the stuck step undone and go on (refused for irreversible steps)."""
    _act("skip", transfer_id, operator, reason)
