"""`tpt ops …`: find stuck transfers, set them moving again (one, or many by query), every action on the record.

Exit codes: 0 done, 1 failed, 2 bad input, 3 refused (by the workflow, by Temporal or by a reset rule), 4 not found,
5 Temporal unreachable.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from tpt.cli_support import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    ends_process,
    fail,
    load_settings,
    temporal_used,
)
from tpt.messages import OpsAction
from tpt.ops.client import (
    DEFAULT_CONCURRENCY,
    BadQuery,
    BulkItem,
    BulkOutcome,
    NothingStuck,
    OpsClient,
    OpsRefused,
    ResetPlan,
    StuckTransfer,
)
from tpt.ops.history import ResetRefused
from tpt.ops.slas import SlaError, stage_slas
from tpt.signing import KeyFileError, Signer
from tpt.stages import Stage

app = typer.Typer(no_args_is_help=True, help="Operations: find stuck transfers and set them moving again.")

R = TypeVar("R")

TransferId = Annotated[str, typer.Argument(help="the transfer id", show_default=False)]
OptionalId = Annotated[str | None, typer.Argument(help="one transfer id (or use --query / --all-stuck)",
                                                  show_default=False)]
Operator = Annotated[str, typer.Option(help="who you are; goes on the audit record", show_default=False)]
OperatorKey = Annotated[Path | None, typer.Option(
    "--key", envvar="TPT_SIGNING_KEY", dir_okay=False, show_default=False,
    help="your operator key file (`tpt keys generate`): the action is signed with it")]
Query = Annotated[str | None, typer.Option(
    "--query", help="every transfer this visibility query matches, e.g. \"DonorNation = 'DE'\"")]
AllStuck = Annotated[bool, typer.Option("--all-stuck", help="every transfer `tpt ops stuck` lists")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="list what would change and how many; change nothing")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation (scripts)")]
Concurrency = Annotated[int, typer.Option(min=1, max=64, help="transfers acted on at once")]
Activity = Annotated[str, typer.Option(
    "--activity", help="the activity's type (e.g. notify_security_cooperation_offices) or id", show_default=False)]


def _run(work: Callable[[OpsClient], Awaitable[R]]) -> R:
    async def go() -> R:
        from tpt.client import connect

        temporal_used()
        try:
            client = await connect(load_settings())
        except RuntimeError as err:
            fail(f"cannot reach Temporal ({err}): start the stack with `tpt dev`, or set TPT_TEMPORAL_ADDRESS",
                 EXIT_UNREACHABLE)
        return await work(OpsClient(client))

    try:
        return asyncio.run(go())
    except NothingStuck as err:
        fail(str(err), EXIT_NOT_FOUND)
    except (OpsRefused, ResetRefused) as err:
        fail(f"refused: {err}", EXIT_REFUSED)
    except (BadQuery, SlaError) as err:
        fail(str(err), EXIT_BAD_INPUT)


def _action(operator: str, reason: str) -> OpsAction:
    from pydantic import ValidationError

    try:
        return OpsAction(operator=operator, reason=reason)
    except ValidationError as err:
        problems = "; ".join(f"--{e['loc'][0]}: {e['msg']}" for e in err.errors())
        fail(problems, EXIT_BAD_INPUT)


def _signer(path: Path | None, operator: str) -> Signer | None:
    """The operator's key file (--key / TPT_SIGNING_KEY), which must be the operator's own; exits 2 otherwise."""
    if path is None:
        return None
    try:
        signer = Signer.load(path)
    except KeyFileError as err:
        fail(f"--key: {err}", EXIT_BAD_INPUT)
    if signer.actor != operator:
        fail(f"--key: {path} is the key of {signer.actor}, not of --operator {operator}", EXIT_BAD_INPUT)
    return signer


def _one_of(transfer_id: str | None, query: str | None, all_stuck: bool) -> None:
    if sum((transfer_id is not None, query is not None, all_stuck)) != 1:
        fail("name one transfer id, or --query, or --all-stuck", EXIT_BAD_INPUT)


# --- finding ---------------------------------------------------------------------------------------------

@app.command("stuck")
@ends_process
def stuck(query: Query = None,
          sla: Annotated[list[str] | None, typer.Option(
              "--sla", help="STAGE=DURATION overriding the stage's SLA (e.g. US_REVIEW=3d; none turns it off)")] = None,
          as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Transfers whose step waits for an operator, or over their stage's SLA: stage, step, reason, attempts,
    last failure, since when."""
    try:
        slas = stage_slas(sla or [])
    except SlaError as err:
        fail(str(err), EXIT_BAD_INPUT)
    found = _run(lambda ops: ops.stuck(query, slas))
    if as_json:
        typer.echo(json.dumps([s.model_dump(mode="json") for s in found], indent=1))
        return
    if not found:
        typer.echo("nothing is stuck")
    for s in found:
        typer.echo(_stuck_line(s))


def _stuck_line(s: StuckTransfer) -> str:
    since = f"{s.since:%Y-%m-%d %H:%M}" if s.since else "?"
    why = "waits for an operator" if s.waits_for_operator else ("over SLA" if s.sla is not None else "needs attention")
    line = (f"{s.transfer_id}  {s.stage or '?':<14} since {since}  [{why}]  {s.step or '-'}"
            f"{' (irreversible)' if s.irreversible else ''}: {s.reason}")
    extra = []
    if s.attempts is not None:
        extra.append(f"attempts {s.attempts}")
    if s.paused:
        extra.append("paused")
    if s.last_failure:
        extra.append(f"last failure: {s.last_failure}")
    if s.workflow_id != s.transfer_id:
        extra.append(f"in {s.workflow_id}")
    return line + (f"\n    {'; '.join(extra)}" if extra else "")


# --- retry and skip --------------------------------------------------------------------------------------

def _step_command(verb: str, transfer_id: str | None, query: str | None, all_stuck: bool, operator: str,
                  reason: str, dry_run: bool, yes: bool, concurrency: int, key: Path | None) -> None:
    _one_of(transfer_id, query, all_stuck)
    action = _action(operator, reason)
    signer = _signer(key, operator)
    if transfer_id is not None and not dry_run:
        step = _run(lambda ops: (ops.retry if verb == "retry" else ops.skip)(transfer_id, action, signer))
        typer.echo(f"{verb} of '{step.step}' for {transfer_id} recorded (operator {operator})")
        return

    async def plan(ops: OpsClient) -> list[BulkItem]:
        items = await ops.plan_steps(verb, query=query)
        return [i for i in items if transfer_id is None or i.transfer_id == transfer_id]

    async def act(ops: OpsClient, item: BulkItem) -> str:
        step = await (ops.retry if verb == "retry" else ops.skip)(item.transfer_id, action, signer)
        return f"{verb} of '{step.step}' recorded"

    _bulk(verb, plan, act, dry_run, yes, concurrency, single=transfer_id is not None)


@app.command("retry")
@ends_process
def retry(transfer_id: OptionalId = None, query: Query = None, all_stuck: AllStuck = False, *,
          operator: Operator, reason: Annotated[str, typer.Option(help="why the step can run now")],
          dry_run: DryRun = False, yes: Yes = False, concurrency: Concurrency = DEFAULT_CONCURRENCY,
          key: OperatorKey = None) -> None:
    """Run the stuck step again: of one transfer, or of every stuck one a query matches (--query, --all-stuck)."""
    _step_command("retry", transfer_id, query, all_stuck, operator, reason, dry_run, yes, concurrency, key)


@app.command("skip")
@ends_process
def skip(transfer_id: OptionalId = None, query: Query = None, all_stuck: AllStuck = False, *,
         operator: Operator, reason: Annotated[str, typer.Option(help="why the step may be left undone")],
         dry_run: DryRun = False, yes: Yes = False, concurrency: Concurrency = DEFAULT_CONCURRENCY,
         key: OperatorKey = None) -> None:
    """Leave the stuck step undone and go on (refused for irreversible steps)."""
    _step_command("skip", transfer_id, query, all_stuck, operator, reason, dry_run, yes, concurrency, key)


# --- workflow reset --------------------------------------------------------------------------------------

@app.command("reset")
@ends_process
def reset(transfer_id: OptionalId = None, query: Query = None, all_stuck: AllStuck = False, *,
          to_stage: Annotated[str, typer.Option("--to-stage", help="the stage to start again: ALLY_SIGNOFF, "
                                                "US_REVIEW, CONGRESSIONAL_REVIEW or SHIPMENT", show_default=False)],
          operator: Operator, reason: Annotated[str, typer.Option(help="why the stage must be done again")],
          dry_run: DryRun = False, yes: Yes = False, concurrency: Concurrency = DEFAULT_CONCURRENCY) -> None:
    """Reset a transfer (Temporal workflow reset) to the start of a stage it reached: decisions made since are
    undone and must be sent again, none counts twice; refused once a shipment leg has left."""
    _one_of(transfer_id, query, all_stuck)
    action = _action(operator, reason)
    try:
        stage = Stage(to_stage.strip().upper())
    except ValueError:
        fail(f"--to-stage {to_stage} is not a stage; stages: {', '.join(s.value for s in Stage)}", EXIT_BAD_INPUT)

    async def plan(ops: OpsClient) -> list[BulkItem]:
        ids = [transfer_id] if transfer_id else await ops.transfers(query, stuck=all_stuck)
        return await ops.plan_resets(stage, ids, concurrency)

    async def act(ops: OpsClient, item: BulkItem) -> str:
        target: ResetPlan = item.target
        done = await ops.reset(target, action)
        return f"reset to {done.stage}: run {done.old_run_id} → {done.new_run_id}, recorded"

    _bulk("reset", plan, act, dry_run, yes, concurrency, single=transfer_id is not None)


@app.command("record-reset")
@ends_process
def record_reset(transfer_id: TransferId, *, operator: Operator,
                 reason: Annotated[str, typer.Option(help="why the transfer was reset")]) -> None:
    """Put a reset done outside `tpt ops reset` (the Temporal UI or CLI) on the audit record."""
    action = _action(operator, reason)
    _run(lambda ops: ops.record_reset(transfer_id, action, {"recorded_after": "reset done outside tpt ops reset"}))
    typer.echo(f"reset of {transfer_id} recorded (operator {operator})")


# --- Temporal's activity operations ----------------------------------------------------------------------

@app.command("pause")
@ends_process
def pause(transfer_id: TransferId, activity: Activity, *, operator: Operator,
          reason: Annotated[str, typer.Option(help="why it must stop retrying")]) -> None:
    """Pause a failing activity of the transfer or its children: no more attempts until `unpause`."""
    action = _action(operator, reason)
    where = _run(lambda ops: ops.pause_activity(transfer_id, activity, action))
    typer.echo(f"paused {activity} in {where} (recorded, operator {operator})")


@app.command("unpause")
@ends_process
def unpause(transfer_id: TransferId, activity: Activity, *, operator: Operator,
            reason: Annotated[str, typer.Option(help="why it may run again")],
            reset_attempts: Annotated[bool, typer.Option("--reset-attempts", help="count attempts from 1 again")]
            = False) -> None:
    """Let a paused activity run again."""
    action = _action(operator, reason)
    where = _run(lambda ops: ops.unpause_activity(transfer_id, activity, action, reset_attempts=reset_attempts))
    typer.echo(f"unpaused {activity} in {where} (recorded, operator {operator})")


@app.command("reset-activity")
@ends_process
def reset_activity(transfer_id: TransferId, activity: Activity, *, operator: Operator,
                   reason: Annotated[str, typer.Option(help="why it should start over now")],
                   keep_paused: Annotated[bool, typer.Option("--keep-paused", help="stay paused if it is")]
                   = False) -> None:
    """Start a pending activity over: attempts from 1, the next attempt now rather than after its backoff."""
    action = _action(operator, reason)
    where = _run(lambda ops: ops.reset_activity(transfer_id, activity, action, keep_paused=keep_paused))
    typer.echo(f"reset {activity} in {where} (recorded, operator {operator})")


# --- bulk ------------------------------------------------------------------------------------------------

def _bulk(verb: str, plan: Callable[[OpsClient], Awaitable[list[BulkItem]]],
          act: Callable[[OpsClient, BulkItem], Awaitable[str]], dry_run: bool, yes: bool, concurrency: int, *,
          single: bool = False) -> None:
    """Show the plan and its count; then, confirmed, act on every item with bounded concurrency."""
    items = _run(plan)
    if single and not items:
        fail(f"nothing to {verb} for that transfer (see `tpt ops stuck`)", EXIT_NOT_FOUND)
    if single and items[0].refused and not dry_run:
        fail(f"refused: {items[0].refused}", EXIT_REFUSED)
    doable = [i for i in items if not i.refused]
    for item in items:
        typer.echo(f"{'would refuse' if item.refused else 'would ' + verb}: {item.transfer_id}: {item.detail}"
                   + (f"\n    refused: {item.refused}" if item.refused else ""))
    typer.echo(f"{len(doable)} transfer(s) would be changed by {verb}, {len(items) - len(doable)} refused")
    if dry_run or not doable:
        if not items:
            typer.echo("nothing matches")
        return
    if not yes:
        if not sys.stdin.isatty():
            fail("not confirmed: run it in a terminal to be asked, or pass --yes", EXIT_BAD_INPUT)
        typer.confirm(f"{verb} {len(doable)} transfer(s)?", abort=True)

    async def apply(ops: OpsClient) -> list[BulkOutcome]:
        return await ops.run_bulk(doable, lambda item: act(ops, item), concurrency)

    outcomes = _run(apply)
    for outcome in outcomes:
        mark = "done" if outcome.ok else ("refused" if outcome.refused else "FAILED")
        typer.echo(f"{mark}: {outcome.transfer_id}: {outcome.message}")
    done = sum(o.ok for o in outcomes)
    refused = sum(o.refused for o in outcomes)
    failed = len(outcomes) - done - refused
    typer.echo(f"{verb}: {done} done, {refused} refused, {failed} failed")
    if failed:
        raise typer.Exit(EXIT_FAILED)
    if refused:
        raise typer.Exit(EXIT_REFUSED)

