"""Scale: N transfers opened and left waiting for sign-off; the resident memory of the worker holding them (a
separate `tpt worker` process, so the figure is the worker's alone), then the time a killed and restarted worker
takes to serve a decision (a sign_off update) on a random one of them."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from subprocess import Popen
from typing import Any

import asyncpg
import psutil

from tpt.bench.latency import _sign_off
from tpt.bench.stack import Stack, free_port, scratch_stack
from tpt.bench.throughput import bench_request
from tpt.client import TransferClient
from tpt.contract import TransferRequest
from tpt.devstack.processes import spawn, stop
from tpt.settings import Settings

# Three times what the worker's sticky cache holds, so the figure is the worker's steady state: past the cache,
# a waiting transfer costs the worker nothing (it is evicted and replayed when a decision comes). 10,000 take
# about 11 min to open on 2 cores (~16 transfers/s, the dev server and the worker each ~55 ms of CPU per transfer
# opened), over the 10-minute budget of `tpt bench`: run `tpt bench scale --open 10000` for the target's size.
DEFAULT_OPEN = 3000
WINDOW = 100  # transfers submitted and still opening, at most
_WAITING = "SELECT count(*) FROM transfers WHERE stage = 'ALLY_SIGNOFF'"  # the projection, with its audit row
_SIGNED = "SELECT count(*) FROM audit_events WHERE transfer_id = $1 AND event_type = 'SIGN_OFF'"


@dataclass
class ScaleResult:
    open: int
    stack: str
    open_seconds: float  # from the first submission until every transfer waits for sign-off (audit row written)
    rss_idle_mib: float  # the worker before any transfer
    rss_mib: float  # with all of them open and waiting
    peak_rss_mib: float  # VmHWM of the worker process
    max_cached_workflows: int
    restart_ready_seconds: float  # restart until /readyz answers 200
    restart_to_decision_seconds: float  # restart until the sign_off update returned
    kill_to_decision_seconds: float

    @property
    def open_per_second(self) -> float:
        return self.open / self.open_seconds if self.open_seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"open_per_second": self.open_per_second}


class _Worker:
    def __init__(self, stack: Stack, where: Path):
        self.where, self.health = where, free_port()
        s = stack.settings
        self.env = os.environ | {
            "TPT_TEMPORAL_ADDRESS": s.temporal_address, "TPT_TEMPORAL_NAMESPACE": s.temporal_namespace,
            "TPT_TASK_QUEUE": s.task_queue, "TPT_DATABASE_URL": stack.db_url, "TPT_WORKER_DATABASE_URL": stack.db_url,
            "TPT_HEALTH_PORT": str(self.health), "TPT_LOG_LEVEL": "WARNING", "TPT_LOG_FORMAT": "json",
            "TPT_WORKER_CACHE_SIZE": str(s.worker_cache_size),
            "TPT_STICKY_TIMEOUT_SECONDS": str(s.sticky_timeout_seconds),
        }
        self.env.pop("TPT_METRICS_BIND", None)
        if s.codec_keys is not None:  # the stack's payload key, so the worker reads what the client wrote
            self.env["TPT_CODEC_KEYS"] = s.codec_keys.get_secret_value()
        self.proc: Popen[bytes] | None = None

    def start(self) -> None:
        argv = [str(Path(sys.executable).parent / "tpt"), "worker"]
        self.proc = spawn(argv, self.where / "worker.log", death_signal=signal.SIGTERM, env=self.env)

    async def ready(self) -> float:
        url = f"http://127.0.0.1:{self.health}/readyz"
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"`tpt worker` exited with {self.proc.returncode}; see {self.where / 'worker.log'}")
            try:
                code = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=1).status)
                if code == 200:
                    return time.perf_counter()
            except OSError:
                pass
            await asyncio.sleep(0.05)

    def rss_mib(self) -> tuple[float, float]:
        assert self.proc is not None
        rss = psutil.Process(self.proc.pid).memory_info().rss / 2**20
        peak = next((int(line.split()[1]) / 1024 for line in
                     Path(f"/proc/{self.proc.pid}/status").read_text().splitlines() if line.startswith("VmHWM")), rss)
        return rss, peak

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, signal.SIGTERM)


async def _open_all(tc: TransferClient, requests: list[TransferRequest], url: str, window: int,
                    limit: float = 3600) -> None:
    """Submit every request, with at most `window` submitted and not yet waiting for sign-off (audit row written).

    Arrivals at the rate the stack opens them, not all at once: a burst far beyond the worker's sticky cache
    measures queueing instead (see README, "Benchmark"), and this scenario measures transfers once open."""
    deadline = time.perf_counter() + limit
    conn = await asyncpg.connect(url)
    try:
        sent = 0
        while (waiting := await conn.fetchval(_WAITING)) < len(requests):
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{len(requests) - waiting} of {len(requests)} transfers never reached ALLY_SIGNOFF")
            batch = requests[sent:sent + max(0, window - (sent - waiting))]
            await asyncio.gather(*(tc.submit(r) for r in batch))
            sent += len(batch)
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def measure(stack: Stack, n: int, where: Path, window: int = WINDOW) -> ScaleResult:
    tag = uuid.uuid4().hex[:6].upper()
    tc = stack.transfers()
    worker = _Worker(stack, where)
    worker.start()
    try:
        await worker.ready()
        await asyncio.sleep(1.0)
        idle, _ = worker.rss_mib()
        requests = [bench_request(f"S{tag}", i) for i in range(n)]
        started = time.perf_counter()

        await _open_all(tc, requests, stack.db_url, window)
        opened = time.perf_counter() - started
        await asyncio.sleep(2.0)  # let the last tasks complete and the cache settle
        rss, peak = worker.rss_mib()
        victim = random.choice(requests)
        killed = time.perf_counter()
        worker.kill()
        restarted = time.perf_counter()
        worker.start()
        ready = asyncio.create_task(worker.ready())
        await tc.sign_off(victim.transfer_id, _sign_off(victim, 0))
        served = time.perf_counter()
        ready_at = await ready
        conn = await asyncpg.connect(stack.db_url)
        try:
            assert await conn.fetchval(_SIGNED, victim.transfer_id) == 1, "the decision is not in the audit history"
        finally:
            await conn.close()
    finally:
        worker.stop()
    return ScaleResult(n, stack.description, opened, idle, rss, peak, stack.settings.worker_cache_size,
                       ready_at - restarted, served - restarted, served - killed)


async def run_scale(settings: Settings, n: int) -> ScaleResult:
    where = Path(tempfile.mkdtemp(prefix="tpt-bench-worker-"))
    async with scratch_stack(settings, in_memory=True) as stack:
        return await measure(stack, n, where)


def report(r: ScaleResult, echo: Callable[[str], None]) -> None:
    echo(f"scale: {r.open} transfers opened and left waiting for sign-off; worker: a separate `tpt worker` "
         f"process (sticky cache {r.max_cached_workflows} workflows, TPT_WORKER_CACHE_SIZE)")
    echo(f"stack: {r.stack}")
    echo("")
    rows = [(f"open all, ≤ {WINDOW} at once (→ waiting, audit row)", f"{r.open_seconds:.1f} s",
             f"{r.open_per_second:.1f}/s"),
            ("worker RSS idle, before any transfer", f"{r.rss_idle_mib:.0f} MiB", ""),
            (f"worker RSS with {r.open} waiting", f"{r.rss_mib:.0f} MiB", f"peak {r.peak_rss_mib:.0f} MiB"),
            ("worker killed (SIGKILL) → decision served", f"{r.kill_to_decision_seconds:.2f} s", ""),
            ("restarted → /readyz 200", f"{r.restart_ready_seconds:.2f} s", ""),
            ("restarted → sign_off update served", f"{r.restart_to_decision_seconds:.2f} s", "")]
    for label, value, extra in rows:
        echo(f"{label:<52}{value:>12}  {extra}")
