"""Migrations apply once, are recorded, and refuse an edited history."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from tpt import migrations
from tpt.database import ensure_database
from tpt.devstack.postgres import EmbeddedPostgres
from tpt.migrations import Migration, MigrationError, current_version, migrate

from ..conftest import Database


async def test_migrate_is_idempotent_and_recorded(database: Database, admin_conn: asyncpg.Connection) -> None:
    assert await migrate(admin_conn) == []  # the fixture already applied everything
    latest = migrations.available()[-1].version
    assert await current_version(admin_conn) == latest
    recorded = await admin_conn.fetch("SELECT version, checksum FROM schema_migrations ORDER BY version")
    assert [(r["version"], r["checksum"]) for r in recorded] == [
        (m.version, m.checksum) for m in migrations.available()
    ]


async def test_an_edited_applied_migration_is_refused(
    admin_conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = migrations.available()[0]
    edited = Migration(first.version, first.name, first.sql + "\n-- edited")
    monkeypatch.setattr(migrations, "available", lambda: [edited])
    with pytest.raises(MigrationError, match="edited after it was applied"):
        await migrate(admin_conn)


async def test_db_migrate_command_is_idempotent(pg_server: EmbeddedPostgres) -> None:
    await ensure_database(pg_server.url(), "t_cli_migrate")
    env = os.environ | {"TPT_DATABASE_URL": pg_server.url("t_cli_migrate")}
    tpt = str(Path(sys.executable).parent / "tpt")
    first = subprocess.run([tpt, "db", "migrate"], env=env, capture_output=True, text=True)
    second = subprocess.run([tpt, "db", "migrate"], env=env, capture_output=True, text=True)
    assert first.returncode == 0 and f"{len(migrations.available())} migration(s) applied" in first.stdout
    assert second.returncode == 0 and "0 migration(s) applied" in second.stdout
    unset = subprocess.run([tpt, "db", "migrate"], env=env | {"TPT_DATABASE_URL": ""}, capture_output=True, text=True)
    assert unset.returncode == 2 and "TPT_DATABASE_URL is not set" in unset.stderr
