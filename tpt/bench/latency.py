"""Decision to visible: from the deciding `sign_off` update returning to the new stage being visible both in
Temporal visibility (the TransferStage search attribute, as `tpt list` and the UI see it) and as its audit row
in Postgres; beside it, the round trip of an empty update on a bare workflow. Samples alternate, under a stated
background load of transfers driven through their whole lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

import asyncpg

from tpt import registry
from tpt import search_attributes as sa
from tpt.bench.bare import BareTransfer, Plan
from tpt.bench.stack import Stack, in_process_workers, scratch_stack
from tpt.bench.throughput import bench_request, bounded, drive_transfer
from tpt.client import TransferClient
from tpt.contract import TransferRequest
from tpt.messages import SignOff
from tpt.settings import Settings
from tpt.stages import Stage

_POLL = 0.005
_AUDIT_ROW = ("SELECT 1 FROM audit_events WHERE transfer_id = $1 AND event_type = 'STAGE_ENTERED' "
              "AND payload->>'from' = 'ALLY_SIGNOFF'")


@dataclass(frozen=True)
class Percentiles:
    n: int
    p50: float
    p95: float
    p99: float
    mean: float

    @classmethod
    def of(cls, seconds: list[float]) -> Percentiles:
        ms = sorted(s * 1000 for s in seconds)

        def at(q: float) -> float:
            return ms[min(len(ms) - 1, max(0, round(q * len(ms) + 0.5) - 1))]  # nearest rank

        return cls(len(ms), at(0.50), at(0.95), at(0.99), statistics.fmean(ms))


@dataclass
class LatencyResult:
    samples: int
    background: int
    background_completed: int
    stack: str
    visible: Percentiles  # both the search attribute and the audit row
    search_attribute: Percentiles
    audit_row: Percentiles
    decision_round_trip: Percentiles  # the deciding sign_off update itself, for context
    bare_round_trip: Percentiles

    @property
    def ratio_p99(self) -> float:
        return self.visible.p99 / self.bare_round_trip.p99 if self.bare_round_trip.p99 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ratio_p99": self.ratio_p99, "unit": "ms"}


def _sign_off(request: TransferRequest, seat: int) -> SignOff:
    role, people = list(registry.for_donor(request.donor).signoff.seats.items())[seat]
    return SignOff(signer=people[0], nation=request.donor, role=role, approve=True,
                   request_digest=request.digest())


async def _until(check: Callable[[], Awaitable[bool]], limit: float = 60.0) -> float:
    deadline = time.perf_counter() + limit
    while not await check():
        if time.perf_counter() > deadline:
            raise TimeoutError("not visible within 60 s")
        await asyncio.sleep(_POLL)
    return time.perf_counter()


async def _sample(stack: Stack, tc: TransferClient, pool: asyncpg.Pool, request: TransferRequest
                  ) -> tuple[float, float, float, float]:
    tid = request.transfer_id
    started = time.perf_counter()
    await tc.sign_off(tid, _sign_off(request, 1))  # the deciding one: quorum is two
    returned = time.perf_counter()

    async def moved_on() -> bool:
        async for wf in stack.client.list_workflows(f"WorkflowId = '{tid}'", limit=1):
            return wf.typed_search_attributes.get(sa.TRANSFER_STAGE) not in (Stage.REQUESTED, Stage.ALLY_SIGNOFF)
        return False

    async def recorded() -> bool:
        return bool(await pool.fetchval(_AUDIT_ROW, tid))

    seen, row = await asyncio.gather(_until(moved_on), _until(recorded))
    return returned - started, seen - returned, row - returned, max(seen, row) - returned


async def measure(stack: Stack, samples: int, background: int) -> LatencyResult:
    tag = uuid.uuid4().hex[:6].upper()
    tc = stack.transfers()
    requests = [bench_request(f"L{tag}", n) for n in range(samples)]

    async def prepare(r: TransferRequest) -> None:  # opened and signed once: one sign-off short of quorum
        await tc.submit(r)
        await tc.sign_off(r.transfer_id, _sign_off(r, 0))

    await bounded([lambda r=r: prepare(r) for r in requests], 10)  # type: ignore[misc]
    bare = await stack.client.start_workflow(BareTransfer.run, Plan(updates_first=10**9), id=f"bare-L{tag}",
                                             task_queue=stack.bare_queue)
    completed = 0
    stop = asyncio.Event()

    async def load(k: int) -> None:
        nonlocal completed
        n = 0
        while not stop.is_set():
            n += 1
            await drive_transfer(tc, bench_request(f"B{tag}{k}", n))
            completed += 1

    loaders = [asyncio.create_task(load(k)) for k in range(background)]
    rows: list[tuple[float, float, float, float]] = []
    pings: list[float] = []
    try:
        await asyncio.sleep(1.0 if background else 0)  # let the load ramp up
        async with asyncpg.create_pool(stack.db_url, min_size=1, max_size=2) as pool:
            for r in requests:
                rows.append(await _sample(stack, tc, pool, r))
                started = time.perf_counter()
                await bare.execute_update(BareTransfer.ping)
                pings.append(time.perf_counter() - started)
    finally:
        stop.set()
        for task in loaders:
            task.cancel()
        for task in loaders:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await bare.terminate("benchmark done")
    decision, sa_, audit, visible = (list(col) for col in zip(*rows, strict=True))
    return LatencyResult(samples, background, completed, stack.description, Percentiles.of(visible),
                         Percentiles.of(sa_), Percentiles.of(audit), Percentiles.of(decision), Percentiles.of(pings))


async def run_latency(settings: Settings, samples: int, background: int) -> LatencyResult:
    async with scratch_stack(settings) as stack, in_process_workers(stack):
        return await measure(stack, samples, background)


def report(r: LatencyResult, echo: Callable[[str], None]) -> None:
    echo(f"decision latency: {r.samples} samples (the deciding sign_off, fast-track transfers) alternating with "
         f"an empty update on a bare workflow")
    echo(f"background load: {r.background} transfers driven through their whole lifecycle at once, continuously "
         f"({r.background_completed} completed meanwhile); poll every {_POLL * 1000:.0f} ms")
    echo(f"stack: {r.stack}; workers in this process")
    echo("")
    echo(f"{'ms':<52}{'p50':>8}{'p95':>8}{'p99':>8}{'mean':>8}")
    for label, p in (("decision returned → stage visible (SA and audit row)", r.visible),
                     ("  … TransferStage search attribute (list)", r.search_attribute),
                     ("  … audit row in Postgres", r.audit_row),
                     ("sign_off update round trip (context)", r.decision_round_trip),
                     ("bare empty update round trip (baseline)", r.bare_round_trip)):
        echo(f"{label:<52}{p.p50:>8.1f}{p.p95:>8.1f}{p.p99:>8.1f}{p.mean:>8.1f}")
    echo(f"ratio p99 visible/bare: {r.ratio_p99:.2f}")
