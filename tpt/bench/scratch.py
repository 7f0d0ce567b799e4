"""A throw-away database for a benchmark: on the configured server, on `tpt dev`'s, or on one started here."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from tpt.cli_support import audit_url
from tpt.database import apply_migrations, ensure_database
from tpt.devstack.postgres import EmbeddedPostgres
from tpt.devstack.processes import port_open
from tpt.settings import Settings


@dataclass(frozen=True)
class Server:
    url: str  # an admin URL on the server; the scratch database is created beside its database
    description: str


def with_database(url: str, name: str) -> str:
    return urlsplit(url)._replace(path=f"/{name}").geturl()


@contextlib.asynccontextmanager
async def server(settings: Settings) -> AsyncIterator[Server]:
    if settings.database_url:
        yield Server(settings.database_url, "configured server (TPT_DATABASE_URL)")
        return
    embedded = audit_url(settings)
    if port_open("127.0.0.1", settings.embedded_pg_port):
        yield Server(embedded, f"embedded server of `tpt dev` (port {settings.embedded_pg_port})")
        return
    async with _own_server() as own:
        yield own


@contextlib.asynccontextmanager
async def _own_server() -> AsyncIterator[Server]:
    # Not under /tmp/pytest-of-*: pytest makes that private, locking out the user Postgres runs as under root.
    where = Path(tempfile.mkdtemp(prefix="tpt-bench-pg-"))
    pg = EmbeddedPostgres(where / "data", _free_port())
    try:
        await asyncio.to_thread(pg.start)
        yield Server(pg.url(), f"EmbeddedPostgres started for this run in {where} (fsync on)")
    finally:
        await asyncio.to_thread(pg.stop)
        shutil.rmtree(where, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def database(server_url: str) -> AsyncIterator[tuple[str, str]]:
    """A freshly migrated database (its name and admin URL), dropped afterwards whatever happens."""
    name = f"tpt_bench_{uuid.uuid4().hex[:8]}"
    await ensure_database(server_url, name)
    try:
        url = with_database(server_url, name)
        await apply_migrations(url)
        yield name, url
    finally:
        conn = await asyncpg.connect(server_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
