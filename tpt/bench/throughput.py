"""Throughput: N transfers through the whole fast-track lifecycle against N bare workflows issuing the same
commands (tpt/bench/bare.py), each driven by the same polling parties, in alternating rounds of one run."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from temporalio.client import Client

from tpt.bench.bare import BareChild, BareStatus, BareTransfer, ChildPlan, Plan
from tpt.bench.stack import Stack, in_process_workers, scratch_stack
from tpt.client import TransferClient
from tpt.contract import TransferRequest
from tpt.demo import SimulatedParties, demo_request
from tpt.errors import DecisionRefused
from tpt.ids import backfill_id, shipment_id
from tpt.settings import Settings

_APPENDS = {"record_audit_event", "bare_append"}
POLL = 0.05  # seconds a party waits before looking again when nothing is for it to do
DEADLINE = 600.0  # seconds one transfer (or bare workflow) may take before the run gives up on it
_ROUNDS = 2  # ours, bare, ours, bare: a burst of load from elsewhere hits both alike


def bench_request(tag: str, n: int) -> TransferRequest:
    """The demo's request (Javelins from LT: framework-covered, fast track) under a unique id."""
    data = demo_request().model_dump(mode="json") | {"transfer_id": f"TPT-BENCH-{tag}-{n:05d}"}
    return TransferRequest.model_validate(data)


# --- driving -------------------------------------------------------------------------------------------------

class Stuck(RuntimeError):
    """A driven workflow did not finish in time (e.g. its decisions keep being refused): the run stops."""


def _check(started: float, what: str, where: object) -> None:
    if time.perf_counter() - started > DEADLINE:
        raise Stuck(f"{what} did not finish within {DEADLINE:.0f} s; last seen: {where}")


async def drive_transfer(tc: TransferClient, request: TransferRequest) -> None:
    started = time.perf_counter()
    handle = await tc.submit(request)
    parties = SimulatedParties(tc, request, say=lambda _: None)
    refused: DecisionRefused | None = None
    while not (status := await tc.status(request.transfer_id)).stage.is_terminal:
        _check(started, request.transfer_id, f"{status.stage.value}, last refusal: {refused}")
        try:
            acted = await parties.act(status)
        except DecisionRefused as err:  # raced the workflow moving on; look again
            acted, refused = False, err
        if not acted:
            await asyncio.sleep(POLL)
    await handle.result()


async def drive_bare(client: Client, queue: str, plan: Plan, workflow_id: str) -> None:
    started = time.perf_counter()
    handle = await client.start_workflow(BareTransfer.run, plan, id=workflow_id, task_queue=queue)
    while (status := await handle.query(BareTransfer.status)).phase <= len(plan.children):
        _check(started, workflow_id, status)
        if not await _act_bare(client, handle.id, plan, status):
            await asyncio.sleep(POLL)
    await handle.result()


async def _act_bare(client: Client, workflow_id: str, plan: Plan, status: BareStatus) -> bool:
    parent = client.get_workflow_handle(workflow_id)
    if status.phase == 0:
        if not status.open or status.updates >= plan.updates_first:
            return False
        await parent.execute_update(BareTransfer.step)
        return True
    if status.phase == len(plan.children) and status.updates < plan.updates:  # as the EEUM inventory
        await parent.execute_update(BareTransfer.step)
        return True
    child = client.get_workflow_handle(f"{workflow_id}-child{status.phase}")
    try:
        done = await child.query(BareChild.status)
    except Exception:  # still starting
        return False
    if done >= plan.children[status.phase - 1].updates:
        return False
    await child.execute_update(BareChild.step)
    return True


async def bounded(jobs: list[Callable[[], Awaitable[None]]], concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one(job: Callable[[], Awaitable[None]]) -> None:
        async with gate:
            await job()

    started = time.perf_counter()
    await asyncio.gather(*(one(j) for j in jobs))
    return time.perf_counter() - started


# --- calibration: what a transfer issues, read from its histories -----------------------------------------

_MARKERS = {"core_local_activity": "local_activity", "core_patch": "patch"}
_PATCH_ATTRIBUTE = "TemporalChangeVersion"  # the server's record of a workflow's patches, upserted with each


async def commands(client: Client, workflow_id: str) -> Counter[str]:
    """The commands one workflow issued, by kind, read from its history (plus `first_child`: updates before it)."""
    counts: Counter[str] = Counter()
    with_update = False  # the workflow task being read took an update
    async for e in client.get_workflow_handle(workflow_id).fetch_history_events():
        if e.HasField("workflow_task_completed_event_attributes"):
            with_update = False
        elif e.HasField("workflow_execution_update_accepted_event_attributes"):
            with_update = True
        if e.HasField("activity_task_scheduled_event_attributes"):
            name = e.activity_task_scheduled_event_attributes.activity_type.name
            kind = "activity:append" if name in _APPENDS else "activity:other"
            counts[kind] += 1
            if kind == "activity:other" and with_update:
                counts["activity:other with an update"] += 1
        elif e.HasField("marker_recorded_event_attributes"):
            name = e.marker_recorded_event_attributes.marker_name
            counts[_MARKERS.get(name, f"marker:{name}")] += 1
        elif e.HasField("upsert_workflow_search_attributes_event_attributes"):
            fields = e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
            counts["upsert:patch" if set(fields) == {_PATCH_ATTRIBUTE} else "upsert"] += 1
        for kind, attr in (("timer", "timer_started_event_attributes"),
                           ("update", "workflow_execution_update_accepted_event_attributes"),
                           ("signal_external", "signal_external_workflow_execution_initiated_event_attributes"),
                           ("child", "start_child_workflow_execution_initiated_event_attributes"),
                           ("workflow_task", "workflow_task_completed_event_attributes")):
            if e.HasField(attr):  # type: ignore[arg-type]
                counts[kind] += 1
        if e.HasField("start_child_workflow_execution_initiated_event_attributes") and "first_child" not in counts:
            counts["first_child"] = counts["update"]  # updates before the first child
    return counts


def _appends(c: Counter[str], other_local: int) -> tuple[int, bool]:
    regular = c["activity:append"]
    return (regular, False) if regular else (c["local_activity"] - other_local, True)


def plan_from(parent: Counter[str], shipment: Counter[str], backfill: Counter[str]) -> Plan:
    """The bare plan with the same commands as these three histories (the reference data is the one other
    local activity; the shipment's SCO notification the one other regular activity)."""
    appends, local = _appends(parent, 1)
    children = []
    for c in (shipment, backfill):
        n, _ = _appends(c, 0)
        children.append(ChildPlan(patches=c["patch"], updates=c["update"], appends=n, timers=c["timer"],
                                  regular=c["activity:other"],
                                  regular_with_updates=c["activity:other with an update"],
                                  signal_parent=c["signal_external"] > 0))
    other_local = parent["local_activity"] - (appends if local else 0)
    return Plan(patches=parent["patch"], appends_local=local, local=other_local, appends=appends,
                updates_first=parent["first_child"], updates=parent["update"],
                timers=parent["timer"], upserts=parent["upsert"], children=children)


def summed(*counts: Counter[str]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for c in counts:
        total.update({k: v for k, v in c.items() if k != "first_child"})
    return dict(sorted(total.items()))


# --- the scenario --------------------------------------------------------------------------------------------

@dataclass
class Side:
    transfers: int = 0
    seconds: float = 0.0
    client_calls: dict[str, int] = field(default_factory=dict)
    commands: dict[str, int] = field(default_factory=dict)  # per transfer, parent and children together

    @property
    def per_second(self) -> float:
        return self.transfers / self.seconds if self.seconds else 0.0


@dataclass
class ThroughputResult:
    transfers: int
    concurrency: int
    stack: str
    ours: Side
    bare: Side
    plan: dict[str, Any]

    @property
    def ratio(self) -> float:
        return self.ours.per_second / self.bare.per_second if self.bare.per_second else 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ours_per_second": self.ours.per_second, "bare_per_second": self.bare.per_second,
                               "ratio": self.ratio}


async def calibrate(stack: Stack, tag: str) -> tuple[Plan, dict[str, int], dict[str, int]]:
    """One transfer and one bare workflow end to end (also warming both up): the plan and both command counts."""
    tc = stack.transfers()
    request = bench_request(tag, 0)
    await drive_transfer(tc, request)
    tid = request.transfer_id
    parts = [await commands(stack.client, w) for w in (tid, shipment_id(tid), backfill_id(tid))]
    plan = plan_from(*parts)
    bare_id = f"bare-{tag}-calibration"
    await drive_bare(stack.client, stack.bare_queue, plan, bare_id)
    bare_parts = [await commands(stack.client, w) for w in (bare_id, f"{bare_id}-child1", f"{bare_id}-child2")]
    return plan, summed(*parts), summed(*bare_parts)


async def measure(stack: Stack, transfers: int, concurrency: int) -> ThroughputResult:
    tag = uuid.uuid4().hex[:6].upper()
    plan, ours_cmds, bare_cmds = await calibrate(stack, tag)
    ours_client, ours_calls = stack.counting_client()
    bare_client, bare_calls = stack.counting_client()
    tc = stack.transfers(ours_client)
    ours, bare = Side(commands=ours_cmds), Side(commands=bare_cmds)
    for k in range(_ROUNDS):
        ids = range(1 + transfers * k // _ROUNDS, 1 + transfers * (k + 1) // _ROUNDS)
        ours.seconds += await bounded(
            [lambda n=n: drive_transfer(tc, bench_request(tag, n)) for n in ids], concurrency)  # type: ignore[misc]
        bare.seconds += await bounded(
            [lambda n=n: drive_bare(bare_client, stack.bare_queue, plan, f"bare-{tag}-{n}")  # type: ignore[misc]
             for n in ids], concurrency)
        ours.transfers += len(ids)
        bare.transfers += len(ids)
    ours.client_calls, bare.client_calls = dict(ours_calls.calls), dict(bare_calls.calls)
    return ThroughputResult(transfers, concurrency, stack.description, ours, bare, plan.model_dump())


async def run_throughput(settings: Settings, transfers: int, concurrency: int) -> ThroughputResult:
    async with scratch_stack(settings) as stack, in_process_workers(stack):
        return await measure(stack, transfers, concurrency)


def report(r: ThroughputResult, echo: Callable[[str], None]) -> None:
    echo(f"throughput: {r.transfers} transfers, fast track (demo request: Javelins from LT), parties acting at once, "
         f"{r.concurrency} at a time; baseline: bare workflows with the same commands")
    echo(f"stack: {r.stack}; workers in this process")
    echo("")
    echo(f"{'path':<34}{'transfers':>10}{'seconds':>10}{'transfers/s':>13}{'calls/transfer':>16}")
    for label, side in (("TransferWorkflow (whole lifecycle)", r.ours), ("bare workflow, same commands", r.bare)):
        calls = sum(side.client_calls.values()) / side.transfers if side.transfers else 0
        echo(f"{label:<34}{side.transfers:>10}{side.seconds:>10.2f}{side.per_second:>13.2f}{calls:>16.1f}")
    echo(f"ratio ours/bare: {r.ratio:.2f}")
    keys = sorted(set(r.ours.commands) | set(r.bare.commands))
    echo("commands per transfer (parent + children), ours / bare: " + ", ".join(
        f"{k.removeprefix('activity:')} {r.ours.commands.get(k, 0)}/{r.bare.commands.get(k, 0)}" for k in keys))
