"""Fault injection on the real stack: helpers shared by the reliability tests.

Every process is started here and bound to 127.0.0.1: a Temporal dev server per test module (its own SQLite file,
headless), `tpt worker` as a separate process (kill -9 and restart at will), and the session's Postgres (or a
dedicated one for the outage test). Transfers are driven by `SimulatedParties` from the test process, retrying
whatever a fault interrupts. Afterwards `check_audit` compares the audit table with the workflow histories.

Settings (environment):
  TPT_RELIABILITY_TRANSFERS          transfers in the worker-kill test (default 50; soak 500)
  TPT_RELIABILITY_KILLS              kill -9 of the worker during that test (default 3; soak 12)
  TPT_RELIABILITY_RESTART_TRANSFERS  transfers in the Temporal-restart test (default 12; soak 200)
  TPT_RELIABILITY_SERVER_RESTARTS    restarts of the Temporal dev server (default 1; soak 3)
  TPT_RELIABILITY_OUTAGE_TRANSFERS   transfers in the Postgres-outage test (default 12; soak 200)
  TPT_RELIABILITY_PG_OUTAGE_SECONDS  length of the Postgres outage (default 30)
  TPT_RELIABILITY_EXAMPLES           hypothesis examples per bad-input property (default 50; soak 300)
  TPT_RELIABILITY_SEED               seed of the fault schedule (default: random, printed and recorded)
  TPT_RELIABILITY_SOAK=1             the soak defaults above (each variable still overrides its own)
  TPT_RELIABILITY_KEEP=1             keep the scratch directories (Temporal SQLite file, worker logs) for a look

Figures of the run are printed at the end of the session and written to test-output/reliability.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType, TaskQueueKind, TaskQueueType, WorkflowTaskFailedCause
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode

from tpt.audit import rebuild
from tpt.audit.chain import verify_chain
from tpt.audit.events import AuditEvent
from tpt.audit.projection import fold
from tpt.audit.store import AuditStore, connect_pool
from tpt.canonical import canonical_json
from tpt.client import TransferClient
from tpt.contract import TransferRequest
from tpt.demo import SimulatedParties
from tpt.devstack.temporal import TemporalDevServer
from tpt.errors import TransferConflict, TransferError, TransferValidationError
from tpt.messages import TransferStatus
from tpt.stages import Stage

from ..conftest import OUTPUT_DIR, free_port, server_dir
from ..keys import TEST_KEYS

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TPT = str(Path(sys.executable).with_name("tpt"))
HOST = "127.0.0.1"


# --- settings ------------------------------------------------------------------------------------------------

def _env_int(name: str, default: int, soak: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else (soak if SOAK else default)


SOAK = os.environ.get("TPT_RELIABILITY_SOAK", "") not in ("", "0")
TRANSFERS = _env_int("TPT_RELIABILITY_TRANSFERS", 50, 500)
KILLS = _env_int("TPT_RELIABILITY_KILLS", 3, 12)
RESTART_TRANSFERS = _env_int("TPT_RELIABILITY_RESTART_TRANSFERS", 12, 200)
SERVER_RESTARTS = _env_int("TPT_RELIABILITY_SERVER_RESTARTS", 1, 3)
OUTAGE_TRANSFERS = _env_int("TPT_RELIABILITY_OUTAGE_TRANSFERS", 12, 200)
PG_OUTAGE_SECONDS = float(os.environ.get("TPT_RELIABILITY_PG_OUTAGE_SECONDS") or 30)
HYPOTHESIS_EXAMPLES = _env_int("TPT_RELIABILITY_EXAMPLES", 50, 300)
SEED = int(os.environ.get("TPT_RELIABILITY_SEED") or random.SystemRandom().randrange(2**32))

# Fast-track examples (framework consent, no congressional review): about 13 decisions and 22 events each.
FAST_TRACK_EXAMPLES = ("javelin-lt", "nvg-nl-dcs")
DECISIONS_PER_TRANSFER = 13


def budget(transfers: int, extra: float = 0.0) -> float:
    """Seconds a fleet of `transfers` may take before the test gives up: generous (shared 2-core machine), bounded."""
    return 180.0 + 3.0 * transfers + extra


def rng_for(name: str) -> random.Random:
    return random.Random(f"{SEED}:{name}")


def example(name: str, prefix: str = "TPT-R") -> TransferRequest:
    data = json.loads((EXAMPLES / f"{name}.json").read_text())
    data["transfer_id"] = f"{prefix}-{uuid.uuid4().hex[:12].upper()}"
    return TransferRequest.model_validate(data)


def fleet_requests(count: int, prefix: str) -> list[TransferRequest]:
    return [example(FAST_TRACK_EXAMPLES[i % len(FAST_TRACK_EXAMPLES)], prefix) for i in range(count)]


# --- the figures of the run --------------------------------------------------------------------------------

REPORT: dict[str, Any] = {}
_TOTALS = ("transfers", "transfers_failed", "faults_injected", "events_checked", "updates_checked", "lost",
           "duplicated")


def record(section: str, **figures: Any) -> None:
    """Keep a test's figures for the summary and test-output/reliability.json (written as soon as recorded)."""
    REPORT.setdefault(section, {}).update(figures)
    _write_report()


def _write_report() -> None:
    sections = {k: v for k, v in REPORT.items() if isinstance(v, dict)}
    totals = {key: sum(int(s.get(key, 0)) for s in sections.values()) for key in _TOTALS}
    document = {"seed": SEED, "soak": SOAK, "totals": totals, **sections}
    OUTPUT_DIR.mkdir(exist_ok=True)
    (OUTPUT_DIR / "reliability.json").write_text(json.dumps(document, indent=2, default=str) + "\n")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORT:
        return
    terminalreporter.section("reliability figures")
    terminalreporter.write_line(f"seed {SEED} (TPT_RELIABILITY_SEED={SEED} repeats the fault schedule)"
                                + ("; soak" if SOAK else ""))
    for section, figures in REPORT.items():
        shown = ", ".join(f"{k} {v}" for k, v in figures.items() if not isinstance(v, dict | list))
        terminalreporter.write_line(f"{section}: {shown}")
    terminalreporter.write_line(f"written to {OUTPUT_DIR / 'reliability.json'}")


# --- processes -------------------------------------------------------------------------------------------

KEEP = os.environ.get("TPT_RELIABILITY_KEEP", "") not in ("", "0")


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A scratch directory, removed afterwards unless TPT_RELIABILITY_KEEP=1 (then its path is printed: the
    Temporal SQLite file and the worker logs stay there for a look with `temporal server start-dev --db-filename`)."""
    if not KEEP:
        with server_dir(prefix) as where:
            yield where
        return
    where = Path(tempfile.mkdtemp(prefix=f"tpt-keep-{prefix}-"))
    print(f"keeping {where}", file=sys.stderr, flush=True)
    yield where

def _die_with_us() -> None:
    # Linux: the kernel kills the child when the test process dies, even by kill -9; nothing is orphaned.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


class WorkerProcess:
    """`tpt worker` in its own process, configured only by TPT_* variables, as a deployment runs it.

    Probes are off (TPT_HEALTH_PORT=0: they would listen on every interface); readiness is read from Temporal
    instead: the worker is ready when a poller with this process's identity (pid@host) is on the task queue."""

    def __init__(self, client: Client, address: str, task_queue: str, database_url: str, scratch: Path,
                 **settings: str):
        self.client, self.address, self.task_queue = client, address, task_queue
        self.database_url, self.scratch = database_url, scratch
        self.settings = settings  # more TPT_* variables
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0
        self.log = scratch / "worker-0.log"

    def env(self) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("TPT_")}
        return inherited | {
            "TPT_TEMPORAL_ADDRESS": self.address, "TPT_TEMPORAL_NAMESPACE": self.client.namespace,
            "TPT_TASK_QUEUE": self.task_queue, "TPT_DATABASE_URL": self.database_url,
            "TPT_WORKER_DATABASE_URL": self.database_url, "TPT_HEALTH_PORT": "0", "TPT_LOG_FORMAT": "json",
            "TPT_SHUTDOWN_GRACE_SECONDS": "5", "TPT_STATE_DIR": str(self.scratch / "state"),
        } | self.settings

    async def start(self, ready_within: float = 120.0) -> None:
        self.spawn()
        await self.wait_ready(ready_within)

    def spawn(self) -> None:
        """Start the process (from the main thread: the kernel's parent-death signal is tied to the spawning
        thread); it takes a few seconds to poll."""
        assert not self.alive, "worker already running"
        self.starts += 1
        self.log = self.scratch / f"worker-{self.starts}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([TPT, "worker"], env=self.env(), stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, preexec_fn=_die_with_us)

    async def wait_ready(self, within: float) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if not self.alive:
                raise AssertionError(f"worker exited with {self.proc and self.proc.returncode} while starting:\n"
                                     f"{tail(self.log)}")
            if await self.polling():
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"worker not polling {self.task_queue} within {within}s:\n{tail(self.log)}")

    async def polling(self) -> bool:
        assert self.proc is not None
        mine = f"{self.proc.pid}@"
        with contextlib.suppress(RPCError):
            described = await self.client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
                namespace=self.client.namespace,
                task_queue=TaskQueue(name=self.task_queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW))
            return any(p.identity.startswith(mine) for p in described.pollers)
        return False

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def kill(self) -> None:
        """kill -9: no drain, no goodbye; in-flight tasks are lost with the process."""
        assert self.proc is not None and self.alive, f"worker is not running:\n{tail(self.log)}"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.kills += 1

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def crashed(self) -> str | None:
        """Why the worker ended on its own (not killed by us), or None while it runs."""
        if self.alive or self.proc is None:
            return None
        return f"worker exited with {self.proc.returncode}:\n{tail(self.log)}"


class TemporalStack:
    """A Temporal dev server on free loopback ports with a scratch SQLite file; restartable on the same file."""

    def __init__(self, scratch: Path):
        self.server = TemporalDevServer(scratch / "temporal.db", HOST, free_port(), free_port(), "default",
                                        ui=False, log_path=scratch / "temporal.log")
        self.restarts = 0

    @property
    def address(self) -> str:
        return f"{HOST}:{self.server.port}"

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def restart(self, down_seconds: float) -> None:
        """Stop the server (SIGTERM), stay down a while, start it again on the same SQLite file and port."""
        self.server.stop()
        time.sleep(down_seconds)
        self.server.start()
        self.restarts += 1

    async def connect(self, within: float = 60.0) -> Client:
        """A client as soon as the frontend is healthy: its port opens before it answers ("Frontend is not healthy
        yet"), more slowly on a loaded machine."""
        deadline = time.monotonic() + within
        while True:
            try:
                return await Client.connect(self.address, data_converter=pydantic_data_converter)
            except RuntimeError as err:
                if "not healthy" not in str(err) or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)


@pytest.fixture(scope="module")
def temporal() -> Iterator[TemporalStack]:
    with scratch_dir("rel-temporal") as where:
        stack = TemporalStack(where)
        stack.start()
        try:
            yield stack
        finally:
            stack.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def temporal_client(temporal: TemporalStack) -> Client:
    return await temporal.connect()


@pytest.fixture
def scratch() -> Iterator[Path]:
    with scratch_dir("rel") as where:
        yield where


@pytest.fixture
def reliability_queue(request: pytest.FixtureRequest) -> str:
    return f"rel-{request.node.name[:30]}-{uuid.uuid4().hex[:6]}"


@contextlib.contextmanager
def worker_process(client: Client, address: str, task_queue: str, database_url: str,
                   scratch: Path, **settings: str) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(client, address, task_queue, database_url, scratch, **settings)
    try:
        yield worker
    finally:
        if worker.alive:
            assert worker.proc is not None
            worker.proc.kill()
            worker.proc.wait(10)


# --- driving a fleet of transfers through faults -----------------------------------------------------------

RETRYABLE = (TransferError, RPCError)  # typed SDK errors (refusals of stale decisions, worker gone, …) and raw RPC
NONDETERMINISM = "[TMPRL1100]"  # the SDK's code for a history the workflow code cannot replay
FAILING_TASK_ATTEMPTS = 4  # a workflow task failed this often is not a passing fault


async def last_task_failure(client: Client, workflow_id: str) -> str:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    failures = run_facts(workflow_id, history.events).task_failures
    return failures[-1] if failures else "(no failure recorded)"


@dataclass
class Fleet:
    """Transfers driven concurrently by simulated parties; every interrupted call is retried from a fresh status."""

    tpt: TransferClient
    requests: list[TransferRequest]
    pause: float = 0.3
    decisions: int = 0
    interruptions: Counter[str] = field(default_factory=Counter)
    finished: dict[str, TransferStatus] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # closed without completing (failed, terminated, …): why
    stages: dict[str, str] = field(default_factory=dict)
    samples: dict[str, list[str]] = field(default_factory=dict)  # a few messages of each kind of interruption
    _rng: random.Random = field(default_factory=lambda: rng_for("fleet"))

    @property
    def done(self) -> bool:
        return len(self.finished) + len(self.failed) == len(self.requests)

    def in_flight(self) -> int:
        return len(self.requests) - len(self.finished) - len(self.failed)

    def _open(self, tid: str) -> bool:
        return tid not in self.finished and tid not in self.failed

    def figures(self) -> dict[str, Any]:
        return {"transfers": len(self.requests),
                "completed": sum(s.stage is Stage.COMPLETED for s in self.finished.values()),
                "transfers_failed": len(self.failed), "failures": self.failed, "decisions": self.decisions,
                "interrupted_calls": dict(self.interruptions), "interruption_samples": self.samples}

    def assert_all_completed(self) -> None:
        assert not self.failed, f"{len(self.failed)} transfer(s) closed without completing: {self.failed}"
        outcomes = Counter(s.stage.value for s in self.finished.values())
        assert outcomes == {"COMPLETED": len(self.requests)}, f"outcomes: {outcomes}"

    def results(self) -> dict[str, TransferStatus | None]:
        """Every transfer's final status; None for one that never completed."""
        return {r.transfer_id: self.finished.get(r.transfer_id) for r in self.requests}

    async def submit_all(self) -> None:
        for request in self.requests:
            await self.retrying(lambda r=request: self.tpt.submit(r), f"submit {request.transfer_id}")

    async def run(self, within: float) -> dict[str, TransferStatus]:
        reporter = asyncio.create_task(self._report_progress())
        try:
            async with asyncio.timeout(within):
                await asyncio.gather(*(self._drive(r) for r in self.requests))
        except TimeoutError:
            stuck = {r.transfer_id: self.stages.get(r.transfer_id, "?") for r in self.requests
                     if self._open(r.transfer_id)}
            raise AssertionError(f"{len(stuck)} transfer(s) unfinished after {within:.0f}s (stages last seen): "
                                 f"{Counter(stuck.values())}; e.g. {list(stuck.items())[:5]}; "
                                 f"{len(self.failed)} closed without completing: {self.failed}") from None
        finally:
            reporter.cancel()
        return self.finished

    async def _report_progress(self, every: float = 10.0) -> None:
        """A line now and then (shown with -s, or under a failure): where the fleet is."""
        began = time.monotonic()
        while True:
            await asyncio.sleep(every)
            unfinished = Counter(s for tid, s in self.stages.items() if self._open(tid))
            print(f"[{time.monotonic() - began:5.0f}s] {len(self.finished)}/{len(self.requests)} completed, "
                  f"{len(self.failed)} failed, "
                  f"{self.decisions} decisions, interrupted {dict(self.interruptions)}, in flight {dict(unfinished)}",
                  file=sys.stderr, flush=True)

    async def _drive(self, request: TransferRequest) -> None:
        tid = request.transfer_id
        parties = SimulatedParties(self.tpt, request, _quiet, TEST_KEYS)
        await asyncio.sleep(self._rng.uniform(0, 1))  # spread the fleet's calls
        idle = 0
        while True:
            try:
                status = await self.tpt.status(tid)
                self.stages[tid] = status.stage.value
                if status.stage.is_terminal:
                    break
                acted = await parties.act(status)
            except RETRYABLE as err:
                self._interrupted(err)
                if NONDETERMINISM in str(err):  # the worker cannot replay it: no retry on our side will help
                    self.failed[tid] = f"stuck in {self.stages.get(tid, '?')}: {err}"
                    return
                if await self._closed_without_completing(tid):
                    return
                await asyncio.sleep(0.5 + self._rng.uniform(0, 0.5))
                continue
            if acted:
                self.decisions += 1
                idle = 0
            else:
                idle += 1
                if idle % 20 == 0 and await self._closed_without_completing(tid):
                    return
            await asyncio.sleep(self._rng.uniform(0.05, self.pause) if acted else self.pause)
        try:
            self.finished[tid] = await self.retrying(lambda: self.tpt.handle(tid).result(), f"result of {tid}")
        except WorkflowFailureError:
            await self._closed_without_completing(tid)

    async def _closed_without_completing(self, tid: str) -> bool:
        """True (and the reason noted in `failed`) when the transfer's workflow closed other than by completing, or
        its workflow task keeps failing (it will not move again without a fix)."""
        try:
            described = await self.tpt.client.get_workflow_handle(tid).describe()
        except RPCError:
            return False
        if described.status is WorkflowExecutionStatus.RUNNING:
            pending = described.raw_description.pending_workflow_task
            if pending.attempt >= FAILING_TASK_ATTEMPTS:
                self.failed[tid] = (f"stuck in {self.stages.get(tid, '?')}: its workflow task failed "
                                    f"{pending.attempt - 1} times: {await last_task_failure(self.tpt.client, tid)}")
                return True
            return False
        if described.status in (None, WorkflowExecutionStatus.COMPLETED):
            return False
        reason = described.status.name
        try:
            await self.tpt.client.get_workflow_handle(tid).result()
        except WorkflowFailureError as err:
            reason += ": " + " / ".join(causes(err))
        except RPCError:
            pass
        self.failed[tid] = reason
        return True

    def _interrupted(self, err: BaseException) -> None:
        kind = type(err).__name__
        self.interruptions[kind] += 1
        seen = self.samples.setdefault(kind, [])
        if len(seen) < 3 and str(err)[:200] not in seen:
            seen.append(str(err)[:200])

    async def retrying(self, call: Callable[[], Awaitable[T]], what: str, within: float = 300.0) -> T:
        deadline = time.monotonic() + within
        while True:
            try:
                return await call()
            except (TransferValidationError, TransferConflict):
                raise
            except RETRYABLE as err:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{what} kept failing for {within}s: {err}") from err
                self._interrupted(err)
                await asyncio.sleep(0.5)


def _quiet(_: str) -> None:
    pass


def causes(err: BaseException | None) -> list[str]:
    messages = []
    while err is not None:
        messages.append(str(getattr(err, "message", None) or err))
        err = err.__cause__ or getattr(err, "cause", None)
    return messages


async def until(progress: Callable[[], bool], fleet: Fleet) -> bool:
    """Wait until `progress()` holds; False if the fleet finished first."""
    while not progress():
        if fleet.done:
            return False
        await asyncio.sleep(0.05)
    return True


def fault_points(rng: random.Random, count: int, transfers: int, low: float, high: float) -> list[int]:
    """Decision counts at which to inject faults: random, spread within [low, high] of the expected total."""
    expected = transfers * DECISIONS_PER_TRANSFER
    return sorted(int(rng.uniform(low, high) * expected) for _ in range(count))


# --- the audit history checked against the workflow histories ----------------------------------------------

# Each accepted-and-completed update records exactly one audit event of this type.
UPDATE_EVENTS = {
    "sign_off": "SIGN_OFF", "amend": "REQUEST_AMENDED", "withdraw": "WITHDRAWAL", "us_decision": "US_DECISION",
    "emergency_waiver": "EMERGENCY_WAIVER", "joint_resolution": "JOINT_RESOLUTION",
    "record_eeum_inventory": "EEUM_INVENTORY", "record_handover": "HANDOVER", "record_backfill": "BACKFILL_RECORDED",
}
AUDIT_ACTIVITY = "record_audit_event"
# A task whose completion raced a new event (signal, update) is retried by Temporal itself; nothing failed.
BENIGN_TASK_FAILURES = {
    WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND,
    WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_UPDATE,
    WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_STICKY_TASK_QUEUE,
}


@dataclass
class RunFacts:
    """What one workflow run's history says about the audit: appends it completed and updates it applied."""

    workflow_id: str
    receipts: list[tuple[int, str]] = field(default_factory=list)  # (seq, hash) returned by each append
    append_attempts: list[int] = field(default_factory=list)
    updates: Counter[str] = field(default_factory=Counter)  # completed successfully, by update name
    task_failures: list[str] = field(default_factory=list)
    benign_task_failures: int = 0  # Temporal's own retries (a new event arrived as the task completed), not faults
    children: list[tuple[str, str]] = field(default_factory=list)  # (workflow id, first run id)
    continued_as: str | None = None


def run_facts(workflow_id: str, events: Iterable[HistoryEvent]) -> RunFacts:
    """Audit appends are read both as regular activities (scheduled → started (attempt) → completed (receipt))
    and as local activities (a `core_local_activity` marker holding attempt and receipt), as older histories
    recorded them."""
    facts = RunFacts(workflow_id)
    accepted: dict[str, str] = {}
    audit_scheduled: set[int] = set()
    attempts: dict[int, int] = {}
    for e in events:
        kind = e.event_type
        if kind == EventType.EVENT_TYPE_MARKER_RECORDED:
            marker = e.marker_recorded_event_attributes
            if marker.marker_name != "core_local_activity" or "data" not in marker.details:
                continue
            data = json.loads(marker.details["data"].payloads[0].data)  # the SDK core's local-activity record
            if data["activity_type"] == AUDIT_ACTIVITY and "result" in marker.details:
                facts.receipts.append(_receipt(marker.details["result"].payloads[0].data))
                facts.append_attempts.append(int(data["attempt"]))
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            if e.activity_task_scheduled_event_attributes.activity_type.name == AUDIT_ACTIVITY:
                audit_scheduled.add(e.event_id)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = e.activity_task_started_event_attributes
            attempts[started.scheduled_event_id] = started.attempt
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            completed = e.activity_task_completed_event_attributes
            if completed.scheduled_event_id in audit_scheduled:
                facts.receipts.append(_receipt(completed.result.payloads[0].data))
                facts.append_attempts.append(attempts.get(completed.scheduled_event_id, 1))
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            request = e.workflow_execution_update_accepted_event_attributes.accepted_request
            accepted[request.meta.update_id] = request.input.name
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED:
            done = e.workflow_execution_update_completed_event_attributes
            if done.outcome.HasField("success"):
                facts.updates[accepted[done.meta.update_id]] += 1
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            failure = e.workflow_task_failed_event_attributes
            if failure.cause in BENIGN_TASK_FAILURES:
                facts.benign_task_failures += 1
                continue
            cause = WorkflowTaskFailedCause.Name(failure.cause).removeprefix("WORKFLOW_TASK_FAILED_CAUSE_")
            facts.task_failures.append(f"{workflow_id}: {cause}: {failure.failure.message[:300]}")
        elif kind == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED:
            child = e.child_workflow_execution_started_event_attributes.workflow_execution
            facts.children.append((child.workflow_id, child.run_id))
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            facts.continued_as = e.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    return facts


def _receipt(data: bytes) -> tuple[int, str]:
    receipt = json.loads(data)  # the activity's AuditReceipt
    return int(receipt["seq"]), str(receipt["hash"])


async def transfer_runs(client: Client, transfer_id: str) -> list[RunFacts]:
    """Every run of the transfer workflow and of its children (following continue-as-new), from their histories."""
    runs: list[RunFacts] = []
    pending: list[tuple[str, str | None]] = [(transfer_id, None)]
    while pending:
        workflow_id, run_id = pending.pop(0)
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        facts = run_facts(workflow_id, history.events)
        runs.append(facts)
        pending += facts.children
        if facts.continued_as:
            pending.append((workflow_id, facts.continued_as))
    return runs


@dataclass
class AuditCheck:
    transfers: int = 0
    events_checked: int = 0
    updates_checked: int = 0
    lost: int = 0
    duplicated: int = 0
    appends_retried: int = 0  # appends that needed more than one attempt (per the histories)
    benign_task_failures: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        return {"events_checked": self.events_checked, "updates_checked": self.updates_checked,
                "lost": self.lost, "duplicated": self.duplicated, "appends_retried": self.appends_retried,
                "workflow_task_retries_by_temporal": self.benign_task_failures,
                "events_by_type": dict(sorted(self.by_type.items()))}

    def assert_clean(self) -> None:
        shown = "\n  ".join(self.problems[:40])
        assert not self.problems and self.lost == 0 and self.duplicated == 0, (
            f"audit history disagrees with the workflow histories (lost {self.lost}, duplicated "
            f"{self.duplicated}, {len(self.problems)} problem(s)):\n  {shown}")


async def check_audit(client: Client, store: AuditStore, results: dict[str, TransferStatus | None]) -> AuditCheck:
    """For each transfer: the chain verifies; the events are exactly those the workflows recorded (the (seq,
    hash) receipts of the audit appends in their histories), one per accepted update of each kind, none repeated;
    the count equals the workflow's own `audit_events` when it has ended; the projection row is the fold of the
    events. `results` maps transfer id → final status (None for a transfer still running)."""
    check = AuditCheck()
    for tid, result in sorted(results.items()):
        check.transfers += 1
        events = await store.history(tid)
        runs = await transfer_runs(client, tid)
        _check_transfer(check, tid, events, runs, result)
        row, rebuilt = await store.transfer(tid), fold(events)
        if row != rebuilt:
            check.problems.append(f"{tid}: projection {row!r} differs from the fold of its events {rebuilt!r}")
    return check


def _check_transfer(check: AuditCheck, tid: str, events: list[AuditEvent], runs: list[RunFacts],
                    result: TransferStatus | None) -> None:
    problem = check.problems.append
    check.events_checked += len(events)
    check.by_type.update(e.event_type for e in events)
    broken = verify_chain(events)
    if broken:
        problem(f"{tid}: chain broken: {broken}")
    if [e.seq for e in events] != list(range(1, len(events) + 1)):
        problem(f"{tid}: sequence numbers are not 1..{len(events)}: {[e.seq for e in events]}")
    ids = Counter(e.event_id for e in events)
    repeated_ids = [i for i, n in ids.items() if n > 1]
    contents = Counter(canonical_json([e.event_type, e.actor, e.role, e.workflow_time.isoformat(), e.payload])
                       for e in events)
    repeated_content = sum(n - 1 for n in contents.values() if n > 1)
    if repeated_ids or repeated_content:
        problem(f"{tid}: repeated event ids {repeated_ids} / {repeated_content} event(s) with repeated content")

    receipts = Counter(r for run in runs for r in run.receipts)
    stored = Counter((e.seq, e.hash) for e in events)
    lost = receipts - stored  # a workflow was told "recorded" but the table does not hold it
    extra = stored - receipts  # the table holds an event no workflow recorded (a retry that appended again)
    twice = sum(n - 1 for n in receipts.values() if n > 1)  # two appends answered with one and the same event
    if lost:
        problem(f"{tid}: {sum(lost.values())} event(s) recorded by the workflows are missing: {sorted(lost)}")
    if extra:
        problem(f"{tid}: {sum(extra.values())} event(s) in the table that no workflow recorded: "
                f"{[e.event_id for e in events if (e.seq, e.hash) in extra]}")
    if twice:
        problem(f"{tid}: {twice} append(s) answered with an event another append had already recorded")

    updates = Counter[str]()
    for run in runs:
        updates.update(run.updates)
        check.appends_retried += sum(1 for attempt in run.append_attempts if attempt > 1)
        check.problems.extend(run.task_failures)
        check.benign_task_failures += run.benign_task_failures
    check.updates_checked += sum(updates.values())
    recorded = Counter(e.event_type for e in events)
    missing_by_type = duplicated_by_type = 0
    for name, count in updates.items():
        event_type = UPDATE_EVENTS.get(name)
        if event_type is None:
            continue  # an update this suite does not send (e.g. an operator's); covered by the receipts above
        if recorded[event_type] != count:
            problem(f"{tid}: {count} {name} update(s) accepted in the histories but {recorded[event_type]} "
                    f"{event_type} event(s) recorded")
            missing_by_type += max(0, count - recorded[event_type])
            duplicated_by_type += max(0, recorded[event_type] - count)
    for name, event_type in UPDATE_EVENTS.items():
        if name not in updates and recorded[event_type]:
            problem(f"{tid}: {recorded[event_type]} {event_type} event(s) but no accepted {name} update")
            duplicated_by_type += recorded[event_type]
    if result is not None and result.audit_events != len(events):
        problem(f"{tid}: the workflow counted {result.audit_events} audit events, the table holds {len(events)}")
    check.lost += max(sum(lost.values()), missing_by_type)
    check.duplicated += max(sum(extra.values()) + twice, duplicated_by_type) + len(repeated_ids) + repeated_content


async def workflow_statuses(client: Client, workflow_ids: Iterable[str]) -> Counter[str]:
    """How many of these workflows are RUNNING, COMPLETED, FAILED, …; NOT_FOUND for an unknown id."""
    found = Counter[str]()
    for wid in workflow_ids:
        try:
            described = await client.get_workflow_handle(wid).describe()
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND:
                raise
            found["NOT_FOUND"] += 1
            continue
        status = described.status
        found[status.name if isinstance(status, WorkflowExecutionStatus) else str(status)] += 1
    return found


async def projection_differences(admin_url: str) -> list[str]:
    """How the stored `transfers` projection differs from a rebuild from the events alone (`tpt audit rebuild`)."""
    pool = await connect_pool(admin_url, 1, 1)
    try:
        async with pool.acquire() as conn:
            return [str(d) for d in await rebuild.check(conn)]
    finally:
        await pool.close()


class LoopThread:
    """An event loop on its own thread, for synchronous tests (hypothesis) that call the async SDK per example."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="reliability-loop", daemon=True)
        self.thread.start()

    def run(self, work: Awaitable[T], timeout: float = 120.0) -> T:
        async def wrapped() -> T:
            return await work

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@contextlib.asynccontextmanager
async def open_store(url: str) -> AsyncIterator[AuditStore]:
    async with AuditStore.open(url, 1, 4) as store:
        yield store
