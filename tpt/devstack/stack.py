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
from tpt.codec import EncryptionCodec, KeyringError, keyring_for
from tpt.codec.keyring import ensure_dev_key_file
from tpt.codec.server import CodecServer, CodecServerError, config_from_settings
from tpt.database import apply_migrations, ensure_database
from tpt.devstack.postgres import EmbeddedPostgres
from tpt.devstack.processes import StackError, require_free_port
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
def temporal_server(settings: Settings, codec_endpoint: str | None = None) -> Iterator[TemporalDevServer]:
    server = TemporalDevServer(
        settings.state_dir / "temporal.db", settings.temporal_host, settings.temporal_port, settings.ui_port,
        settings.temporal_namespace, binary=settings.temporal_bin, codec_endpoint=codec_endpoint,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def with_codec_keys(settings: Settings) -> Settings:
    """The configured keyring, or `tpt dev`'s own: a key file made in the state directory on the first run."""
    if settings.codec_keys is not None or settings.codec_key_file is not None:
        return settings
    try:
        return settings.model_copy(update={"codec_key_file": ensure_dev_key_file(settings)})
    except (ValueError, OSError) as err:  # a damaged or unreadable key file (KeyringError is a ValueError)
        raise StackError(f"the dev codec key file in {settings.state_dir} cannot be used ({err}): restore it "
                         "from a backup; deleting it makes a new key and the transfers stored so far unreadable"
                         ) from err


@contextlib.contextmanager
def codec_server(settings: Settings) -> Iterator[CodecServer]:
    """The remote codec the Web UI decrypts payloads through, serving the same keyring as the worker."""
    try:
        server = CodecServer(config_from_settings(settings, EncryptionCodec(keyring_for(settings))))
    except (KeyringError, CodecServerError) as err:
        raise StackError(str(err)) from err
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
    settings = with_codec_keys(settings)
    with codec_server(settings) as codec, temporal_server(settings, settings.codec_url):
        async with database(settings) as urls, AuditStore.open(
            urls.worker, settings.db_pool_min, settings.db_pool_max
        ) as store:
            client = await _connect_when_healthy(settings)
            worker = build_worker(client, store, settings.task_queue)
            _print_banner(settings, urls, metrics_url, codec)
            async with worker:
                extra = asyncio.create_task(on_ready(client, settings)) if on_ready else None
                await stop.wait()
                if extra:
                    extra.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await extra
    print("tpt dev: stopped; state kept in", settings.state_dir, flush=True)


def _print_banner(settings: Settings, urls: DatabaseUrls, metrics_url: str, codec: CodecServer) -> None:
    keyring = codec.config.codec.keyring
    assert keyring is not None
    login = ([f"  Codec login      {codec.url}/login with TPT_CODEC_TOKEN, then tick \"Include cross-origin "
              "credentials\" in the UI's Codec Server settings (README: Payload encryption)"]
             if codec.config.token else [])
    print(
        "\n".join([
            "",
            "tpt dev stack is up",
            f"  Temporal Web UI  {settings.ui_url}/namespaces/{settings.temporal_namespace}/workflows",
            f"  Temporal gRPC    {settings.temporal_address}",
            f"  Codec server     {settings.codec_url} (payloads AES-256-GCM encrypted, current key {keyring.current})",
            f"  Codec keys       {keyring.source}",
            *login,
            f"  Audit database   {urls.admin}",
            f"  Metrics          {metrics_url}",
            f"  Task queue       {settings.task_queue}",
            f"  State directory  {settings.state_dir}",
            "  Stop with Ctrl-C.",
            "",
        ]),
        flush=True,
    )


async def _connect_when_healthy(settings: Settings, within: float = 60.0) -> Client:
    """The dev server opens its port before its frontend answers ("Frontend is not healthy yet")."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            return await connect(settings)
        except RuntimeError as err:
            if "not healthy" not in str(err) or asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)
