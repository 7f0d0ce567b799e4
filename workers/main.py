"""Standalone worker process (`tpt worker`): connects to an existing Temporal and audit database."""

from __future__ import annotations

import asyncio
import signal

import structlog

from tpt.audit.store import AuditStore
from tpt.client import connect
from tpt.settings import Settings
from workers.transfer_worker import build_worker

log = structlog.get_logger(__name__)


async def run_worker(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    url = settings.worker_database_url or settings.database_url
    assert url, "database URL required"
    async with AuditStore.open(url, settings.db_pool_min, settings.db_pool_max) as store:
        client = await connect(settings)
        async with build_worker(client, store, settings.task_queue):
            log.info("worker running", task_queue=settings.task_queue, temporal=settings.temporal_address)
            await stop.wait()
            log.info("worker draining")
