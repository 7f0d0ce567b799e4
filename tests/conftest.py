"""Real servers for the suite: one Postgres, one Temporal dev server, one time-skipping server per session.

Each test module gets its own freshly migrated database; each test its own task queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
import structlog
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from tpt import search_attributes
from tpt.audit.store import AuditStore
from tpt.database import apply_migrations, ensure_database
from tpt.devstack.postgres import EmbeddedPostgres
from tpt.devstack.temporal import default_binary

OUTPUT_DIR = Path(__file__).resolve().parent.parent / "test-output"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres]:
    with server_dir("pg") as where:
        server = EmbeddedPostgres(where / "data", free_port(), durable=False)
        server.start()
        yield server
        server.stop()


@contextlib.contextmanager
def server_dir(prefix: str) -> Iterator[Path]:
    """A scratch directory outside pytest's own: pytest makes its root private at every session start,
    which would lock out the unprivileged user Postgres runs as when another session runs beside this one."""
    path = Path(tempfile.mkdtemp(prefix=f"tpt-test-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Database:
    def __init__(self, server: EmbeddedPostgres, name: str):
        self.name = name
        self.admin_url = server.url(name)
        self.worker_url = server.url(name, user="tpt_worker")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def database(pg_server: EmbeddedPostgres, request: pytest.FixtureRequest) -> Database:
    module = re.sub(r"[^a-z0-9]+", "_", request.module.__name__.rsplit(".", 1)[-1].lower())
    db = Database(pg_server, f"t_{module}_{uuid.uuid4().hex[:6]}")
    await ensure_database(pg_server.url(), db.name)
    await apply_migrations(db.admin_url)
    await register_test_keys(db.admin_url)
    return db


async def register_test_keys(admin_url: str) -> None:
    """Every party the tests decide as has a registered key (tests/keys.py): transfers require signed decisions."""
    from tpt.keys import store

    from .keys import TEST_KEYS

    conn = await asyncpg.connect(admin_url)
    try:
        await store.add_all(conn, TEST_KEYS.registrations(), added_by="tests")
    finally:
        await conn.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def audit_store(database: Database) -> AsyncIterator[AuditStore]:
    async with AuditStore.open(database.worker_url, 1, 20) as store:
        yield store


@pytest_asyncio.fixture(loop_scope="session")
async def admin_conn(database: Database) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database.admin_url)
    yield conn
    await conn.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(default_binary("temporal")),
        search_attributes=search_attributes.ALL,
        data_converter=pydantic_data_converter,
    )
    yield env
    await env.shutdown()


@pytest_asyncio.fixture(loop_scope="session")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """A fresh time-skipping server per test: one test's outstanding activities must not hold another's clock."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(default_binary("temporal-test-server")),
        data_converter=pydantic_data_converter,
    )
    await search_attributes.register(env.client, env.client.namespace)
    yield env
    await env.shutdown()


@pytest.fixture
def client(dev_env: WorkflowEnvironment) -> Client:
    return dev_env.client


@pytest.fixture
def task_queue(request: pytest.FixtureRequest) -> str:
    return f"tq-{request.node.name[:40]}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def log_capture() -> Iterator[list[dict[str, object]]]:
    """Every structlog event written during the test, with its bound context (transfer id and the like)."""
    capture = structlog.testing.LogCapture()
    saved = structlog.get_config()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture])
    try:
        yield capture.entries
    finally:
        structlog.configure(**saved)


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT_DIR.mkdir(exist_ok=True)
    return OUTPUT_DIR


async def eventually(predicate, timeout: float = 15.0, interval: float = 0.1):  # type: ignore[no-untyped-def]
    """Poll an async predicate until it returns something truthy (visibility is eventually consistent)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await predicate()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {result!r})")
        await asyncio.sleep(interval)
