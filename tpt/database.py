"""Creating and migrating the audit database."""

from __future__ import annotations

import asyncpg

from tpt.migrations import migrate


async def ensure_database(server_url: str, name: str) -> None:
    conn = await asyncpg.connect(server_url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def apply_migrations(admin_url: str) -> int:
    """Apply pending migrations; the number applied now."""
    conn = await asyncpg.connect(admin_url)
    try:
        return len(await migrate(conn))
    finally:
        await conn.close()
