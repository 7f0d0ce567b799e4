"""The worker-role password step, run for real with psql against the test Postgres: the compose job's SQL file
and the Kubernetes migrate Job's inline script (the exact shell text of the manifest)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest_asyncio

from tpt.devstack.postgres import _bin_dir

from ..conftest import Database
from .conftest import ROOT, find

ROLE_SQL = ROOT / "deploy" / "audit" / "worker-role.sql"


async def run(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "WORKER_PASSWORD"))}
    proc = await asyncio.create_subprocess_exec(
        *argv, env=clean | {"PATH": f"{_bin_dir()}:{os.environ['PATH']}"} | env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await proc.communicate()
    return proc.returncode or 0, output.decode()


@pytest_asyncio.fixture(loop_scope="session")
async def admin(database: Database) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database.admin_url)
    yield conn
    # The role is cluster-wide and the test server trusts every login: leave it as migrations made it.
    await conn.execute("ALTER ROLE tpt_worker PASSWORD NULL")
    await conn.close()


async def has_password(admin: asyncpg.Connection) -> bool:
    return bool(await admin.fetchval("SELECT rolpassword IS NOT NULL FROM pg_authid WHERE rolname = 'tpt_worker'"))


async def test_the_compose_job_sets_the_password_and_refuses_without_one(
    database: Database, admin: asyncpg.Connection
) -> None:
    psql = ["psql", database.admin_url, "--no-psqlrc", "--file", str(ROLE_SQL)]
    code, output = await run(psql, {})
    assert code != 0 and "WORKER_PASSWORD is not set" in output
    assert not await has_password(admin)
    for password in ("first-secret", "rotated-secret"):  # running it again rotates
        code, output = await run(psql, {"WORKER_PASSWORD": password})
        assert code == 0, output
        assert await has_password(admin)
    can_login = await admin.fetchval("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'tpt_worker'")
    assert can_login


async def test_the_kubernetes_migrate_job_script_runs_as_written(
    database: Database, admin: asyncpg.Connection, manifests: list[dict[str, Any]]
) -> None:
    init = find(manifests, "Job", "tpt-migrate")["spec"]["template"]["spec"]["initContainers"][0]
    argv = init["command"] + init["args"]
    code, output = await run(argv, {"OWNER_URL": database.admin_url, "WORKER_PASSWORD": "k8s-secret"})
    assert code == 0, output
    assert await has_password(admin)
