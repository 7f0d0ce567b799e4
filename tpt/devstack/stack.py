"""`tpt dev`: the whole stack on one machine, started in order and stopped in reverse, nothing left behind."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import structlog
from temporalio.client import Client

from tpt.audit.store import AuditStore
from tpt.client import connect
from tpt.database import apply_migrations, ensure_database
from tpt.devstack.postgres import EmbeddedPostgres
from tpt.devstack.processes import require_free_port
from tpt.devstack.temporal import TemporalDevServer
from tpt.settings import Settings
from tpt.telemetry import install_metrics
from workers.transfer_worker import build_worker

log = structlog.get_logger(__name__)

DATABASE = "tpt"


@dataclass
class DatabaseUrls:
    admin: str
    worker: str


@contextlib.asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[DatabaseUrls]:
    """The audit database, migrated: the configured server, or the embedded one started here."""
    if settings.database_url:
        await apply_migrations(settings.database_url)
        yield DatabaseUrls(settings.database_url, settings.worker_database_url or settings.database_url)
        return
    pg = EmbeddedPostgres(settings.state_dir / "postgres", settings.embedded_pg_port)
    pg.start()
    try:
        await ensure_database(pg.url(), DATABASE)
        await apply_migrations(pg.url(DATABASE))
        yield DatabaseUrls(pg.url(DATABASE), pg.url(DATABASE, user="tpt_worker"))
    finally:
        pg.stop()


@contextlib.contextmanager
def temporal_server(settings: Settings) -> Iterator[TemporalDevServer]:
    server = TemporalDevServer(
        settings.state_dir / "temporal.db", settings.temporal_host, settings.temporal_port, settings.ui_port,
        settings.temporal_namespace, binary=settings.temporal_bin,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


OnReady = Callable[[Client, Settings], Coroutine[Any, Any, None]]


async def run_dev(settings: Settings, on_ready: OnReady | None = None) -> None:
    """Run the stack and a worker until SIGINT/SIGTERM; `on_ready` (e.g. the demo) runs beside the worker."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    require_free_port("127.0.0.1", settings.metrics_port, "metrics endpoint", "TPT_METRICS_PORT")
    metrics_url = install_metrics(f"127.0.0.1:{settings.metrics_port}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with temporal_server(settings):
        async with database(settings) as urls, AuditStore.open(
            urls.worker, settings.db_pool_min, settings.db_pool_max
        ) as store:
            client = await connect(settings)
            worker = build_worker(client, store, settings.task_queue)
            _print_banner(settings, urls, metrics_url)
            async with worker:
                extra = asyncio.create_task(on_ready(client, settings)) if on_ready else None
                await stop.wait()
                if extra:
                    extra.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await extra
    print("tpt dev: stopped; state kept in", settings.state_dir, flush=True)


def _print_banner(settings: Settings, urls: DatabaseUrls, metrics_url: str) -> None:
    print(
        "\n".join([
            "",
            "tpt dev stack is up",
            f"  Temporal Web UI  {settings.ui_url}/namespaces/{settings.temporal_namespace}/workflows",
            f"  Temporal gRPC    {settings.temporal_address}",
            f"  Audit database   {urls.admin}",
            f"  Metrics          {metrics_url}",
            f"  Task queue       {settings.task_queue}",
            f"  State directory  {settings.state_dir}",
            "  Stop with Ctrl-C.",
            "",
        ]),
        flush=True,
    )
