"""Standalone worker process (`tpt worker`): connects to an existing Temporal and audit database.

Configuration comes only from `TPT_*` environment variables (tpt/settings.py). Lifecycle:
probes up first (/healthz alive, /readyz not yet) → audit pool → Temporal client → worker polling (/readyz 200)
→ SIGTERM/SIGINT: /readyz 503, stop polling, let in-flight activities finish for up to
TPT_SHUTDOWN_GRACE_SECONDS (then they are cancelled and retried elsewhere), close the pool, stop the probes, exit 0.
A worker that Temporal refuses (unknown namespace, bad credentials) exits 1 instead of hanging unready.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from datetime import timedelta

import structlog
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client
from temporalio.worker import Worker

from tpt.audit.store import AuditStore
from tpt.cli_support import EXIT_BAD_INPUT, EXIT_UNREACHABLE, fail
from tpt.client import connect
from tpt.settings import Settings
from tpt.telemetry import install_metrics
from workers.health import HealthServer
from workers.transfer_worker import build_worker

log = structlog.get_logger(__name__)


class Readiness:
    """What /readyz checks; each part raises until the process has built it."""

    def __init__(self) -> None:
        self.client: Client | None = None
        self.store: AuditStore | None = None
        self.worker: Worker | None = None

    async def temporal(self) -> None:
        if self.client is None:
            raise RuntimeError("not connected yet")
        await self.client.workflow_service.get_system_info(GetSystemInfoRequest(), timeout=timedelta(seconds=2))

    async def postgres(self) -> None:
        if self.store is None:
            raise RuntimeError("not connected yet")
        await self.store.pool.fetchval("SELECT 1")

    async def polling(self) -> None:
        if self.worker is None or not self.worker.is_running:
            raise RuntimeError("worker not polling")


@contextlib.asynccontextmanager
async def probes(settings: Settings, readiness: Readiness) -> AsyncIterator[HealthServer | None]:
    if not settings.health_port:
        yield None
        return
    server = HealthServer(settings.health_port, {
        "temporal": readiness.temporal, "postgres": readiness.postgres, "worker": readiness.polling,
    })
    try:
        await server.start()
    except OSError as err:
        fail(err.strerror or str(err))
    try:
        yield server
    finally:
        await server.stop()


async def run_worker(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    url = settings.worker_database_url or settings.database_url
    assert url, "database URL required"
    if settings.metrics_bind:
        log.info("metrics served", url=install_metrics(settings.metrics_bind))
    readiness = Readiness()
    async with probes(settings, readiness) as health, AuditStore.open(
        url, settings.db_pool_min, settings.db_pool_max
    ) as store:
        readiness.store = store
        readiness.client = client = await _connect(settings)
        readiness.worker = worker = build_worker(
            client, store, settings.task_queue,
            graceful_shutdown_timeout=timedelta(seconds=settings.shutdown_grace_seconds),
            max_cached_workflows=settings.worker_cache_size,
            sticky_queue_schedule_to_start_timeout=timedelta(seconds=settings.sticky_timeout_seconds),
        )
        await _run_until_stopped(worker, stop, health, settings)


async def _connect(settings: Settings) -> Client:
    try:
        return await connect(settings)
    except ValueError as err:  # inconsistent TLS settings
        fail(str(err), EXIT_BAD_INPUT)
    except RuntimeError as err:  # the SDK's "Failed client connect: …"
        fail(f"cannot reach Temporal at {settings.temporal_address} ({err}): check TPT_TEMPORAL_ADDRESS "
             "and, for a managed Temporal, TPT_TEMPORAL_API_KEY or the TPT_TEMPORAL_TLS_* files", EXIT_UNREACHABLE)


async def _run_until_stopped(worker: Worker, stop: asyncio.Event, health: HealthServer | None,
                             settings: Settings) -> None:
    running = asyncio.create_task(worker.run())
    stopping = asyncio.create_task(stop.wait())
    log.info("worker starting", task_queue=settings.task_queue, temporal=settings.temporal_address,
             namespace=settings.temporal_namespace, health_port=settings.health_port or None)
    await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if running.done():  # stopped without being asked: Temporal refused the worker, or it failed fatally
        stopping.cancel()
        error = running.exception()
        fail(f"worker stopped: {error}" if error else "worker stopped unexpectedly")
    if health is not None:
        health.draining = True  # /readyz 503 at once: nothing new should be routed to a stopping worker
    log.info("worker draining", grace_seconds=settings.shutdown_grace_seconds)
    await worker.shutdown()  # stops polling; in-flight activities get the grace period, then are cancelled
    await running
    log.info("worker stopped")
