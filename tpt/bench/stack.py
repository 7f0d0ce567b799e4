"""The scratch stack every `tpt bench` scenario runs on: a Temporal dev server on free ports with a throw-away
SQLite file, a scratch Postgres database (tpt/bench/scratch.py), and, when asked, the workers in this process.

As `tpt dev`'s: payloads encrypted (a throw-away key, unless a keyring is configured), decisions signed by the
simulated parties with keys registered in the scratch database's signer registry."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import SecretStr
from temporalio.client import Client, Interceptor, OutboundInterceptor

from tpt.audit.store import AuditStore
from tpt.bench import scratch
from tpt.bench.bare import build_bare_worker
from tpt.client import TransferClient, connect
from tpt.demo import demo_request, parties_for
from tpt.devstack.temporal import TemporalDevServer
from tpt.keys import store as key_store
from tpt.settings import Settings
from tpt.signing import Keychain
from workers.transfer_worker import build_worker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    settings: Settings  # pointing at the scratch Temporal and database; task_queue is the transfers' queue
    client: Client
    db_url: str
    description: str
    keys: Keychain  # the simulated parties' (tpt/demo.py), registered in the scratch database

    def transfers(self, client: Client | None = None) -> TransferClient:
        """The SDK on the transfers' queue, each decision signed with its party's key."""
        return TransferClient(client or self.client, self.settings.task_queue, self.keys)

    @property
    def bare_queue(self) -> str:
        return f"{self.settings.task_queue}-bare"

    def counting_client(self) -> tuple[Client, CallCounter]:
        """The same connection, counting the client calls made through it (starts, queries, updates)."""
        counter = CallCounter()
        return Client(self.client.service_client, namespace=self.client.namespace,
                      data_converter=self.client.data_converter, interceptors=[counter]), counter


class _InMemoryDevServer(TemporalDevServer):
    """The same dev server keeping its state in memory (the CLI's default without --db-filename)."""

    def argv(self) -> list[str]:
        argv = super().argv()
        at = argv.index("--db-filename")
        return argv[:at] + argv[at + 2:]


@contextlib.asynccontextmanager
async def scratch_stack(settings: Settings, *, in_memory: bool = False) -> AsyncIterator[Stack]:
    """`in_memory`: the dev server's SQLite in memory rather than in a file (about half its CPU per workflow task
    on a small machine), for a scenario that measures the worker, not the server."""
    where = Path(tempfile.mkdtemp(prefix="tpt-bench-temporal-"))
    kind = _InMemoryDevServer if in_memory else TemporalDevServer
    server = kind(where / "temporal.db", "127.0.0.1", free_port(), free_port(), "default", ui=False)
    await asyncio.to_thread(server.start)
    try:
        async with scratch.server(settings) as pg, scratch.database(pg.url) as (name, url):
            bench_settings = settings.model_copy(update={
                "temporal_address": f"127.0.0.1:{server.port}", "temporal_namespace": "default",
                "database_url": url, "worker_database_url": url, "health_port": 0, "metrics_bind": None,
                "task_queue": f"bench-{uuid.uuid4().hex[:8]}",
            } | _codec(settings))
            client = await connect(bench_settings)
            keys = await _register_parties(url)
            sqlite = "in memory" if in_memory else "file"
            yield Stack(bench_settings, client, url,
                        f"Temporal dev server (SQLite {sqlite}, 127.0.0.1:{server.port}); Postgres: {pg.description}, "
                        f"scratch database {name} (dropped); payloads encrypted, decisions signed", keys)
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(where, ignore_errors=True)


def _codec(settings: Settings) -> dict[str, object]:
    """Payload encryption as `tpt dev` has it: the configured keyring, else a throw-away key for this run."""
    if settings.codec_keys is not None or settings.codec_key_file is not None:
        return {}
    return {"codec_keys": SecretStr(f"bench:{base64.b64encode(os.urandom(32)).decode()}")}


async def _register_parties(db_url: str) -> Keychain:
    """Keys for everyone who decides on the bench's transfers (the demo request's donor, requester, U.S. side),
    registered as the database owner, as `tpt dev --demo` does."""
    request = demo_request()
    keys = Keychain.generate(parties_for([request.donor], [(request.requested_by, request.donor)]))
    conn = await asyncpg.connect(db_url)
    try:
        await key_store.add_all(conn, keys.registrations(), added_by="tpt bench")
    finally:
        await conn.close()
    return keys


@contextlib.asynccontextmanager
async def in_process_workers(stack: Stack) -> AsyncIterator[AuditStore]:
    """The transfer worker as production builds it, and the bare worker beside it, both in this process."""
    s = stack.settings
    async with AuditStore.open(stack.db_url, s.db_pool_min, s.db_pool_max) as store:
        async with build_worker(stack.client, store, s.task_queue), build_bare_worker(stack.client, stack.bare_queue):
            yield store


class CallCounter(Interceptor):
    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _Counting(next, self.calls)


class _Counting(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, calls: dict[str, int]):
        super().__init__(next)
        self._calls = calls

    def _count(self, kind: str) -> None:
        self._calls[kind] = self._calls.get(kind, 0) + 1

    async def start_workflow(self, input: Any) -> Any:
        self._count("start")
        return await super().start_workflow(input)

    async def query_workflow(self, input: Any) -> Any:
        self._count("query")
        return await super().query_workflow(input)

    async def start_workflow_update(self, input: Any) -> Any:
        self._count("update")
        return await super().start_workflow_update(input)
