"""`tpt audit rebuild` recomputes the projection from the events alone, reports differences and repairs them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from tpt.audit import rebuild
from tpt.audit.events import NewAuditEvent, event_id
from tpt.audit.store import AuditStore, ProjectionBehind
from tpt.stages import Stage

from ..conftest import Database

TPT = str(Path(sys.executable).parent / "tpt")
T0 = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def admin_store(database: Database) -> AsyncIterator[AuditStore]:
    """The store's pool (its jsonb codec) as the owner: what `tpt audit rebuild --apply` connects as."""
    async with AuditStore.open(database.admin_url, 1, 2) as store:
        yield store


def tpt(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"TPT_DATABASE_URL": url, "TPT_LOG_FORMAT": "json"}
    return subprocess.run([TPT, *args], env=env, capture_output=True, text=True)


def event(transfer_id: str, n: int, event_type: str, stage: Stage, **payload: object) -> NewAuditEvent:
    return NewAuditEvent(
        event_id=event_id(transfer_id, event_type, n), transfer_id=transfer_id, event_type=event_type, stage=stage,
        actor="tpt-engine", role="system", workflow_time=T0 + timedelta(hours=n), policy_version="aeca-2025.1",
        request_digest=f"{n:064x}", payload=payload,
    )


async def seed(store: AuditStore, transfer_id: str, donor: str) -> None:
    """A transfer that walks three stages and picks up every projected column on the way."""
    for e in (
        event(transfer_id, 1, "TRANSFER_REQUESTED", Stage.REQUESTED, donor=donor, recipient="UA",
              total_value_usd="2500000.50", priority="URGENT"),
        event(transfer_id, 2, "STAGE_ENTERED", Stage.ALLY_SIGNOFF, route="STANDARD"),
        event(transfer_id, 3, "NEEDS_ATTENTION", Stage.ALLY_SIGNOFF, needs_attention=True, blocked_reason="timeout"),
        event(transfer_id, 4, "STAGE_ENTERED", Stage.US_REVIEW, needs_attention=False, blocked_reason=None),
    ):
        await store.append(e)


async def projection_rows(conn: asyncpg.Connection) -> list[dict[str, object]]:
    return [dict(r) for r in await conn.fetch("SELECT * FROM transfers ORDER BY transfer_id")]


async def test_rebuild_reproduces_an_emptied_projection_exactly(
    audit_store: AuditStore, database: Database, admin_conn: asyncpg.Connection
) -> None:
    for n, donor in enumerate(("DE", "PL", "NL"), start=1):
        await seed(audit_store, f"TPT-RB-{n}", donor)
    before = await projection_rows(admin_conn)

    await admin_conn.execute("DELETE FROM transfers")
    reported = tpt(database.admin_url, "audit", "rebuild")
    assert reported.returncode == 1
    assert [line for line in reported.stdout.splitlines() if "row missing" in line] == [
        f"TPT-RB-{n}  row missing: the events give a row" for n in (1, 2, 3)]
    applied = tpt(database.admin_url, "audit", "rebuild", "--apply")
    assert applied.returncode == 0, applied.stderr
    assert "rewrote 3 transfer row(s)" in applied.stdout
    assert await projection_rows(admin_conn) == before
    again = tpt(database.admin_url, "audit", "rebuild")
    assert again.returncode == 0 and "ok: the projection matches the events" in again.stdout


async def test_rebuild_names_every_altered_column(
    audit_store: AuditStore, admin_store: AuditStore, database: Database, admin_conn: asyncpg.Connection
) -> None:
    await seed(audit_store, "TPT-RB-ALT", "FR")
    await admin_conn.execute(
        "UPDATE transfers SET stage = 'COMPLETED', total_value_usd = 1 WHERE transfer_id = 'TPT-RB-ALT'")
    reported = tpt(database.admin_url, "audit", "rebuild")
    assert reported.returncode == 1
    assert reported.stdout.splitlines() == [
        "TPT-RB-ALT  stage: stored 'COMPLETED', rebuilt 'US_REVIEW'",
        "TPT-RB-ALT  total_value_usd: stored Decimal('1.00'), rebuilt Decimal('2500000.50')",
    ]
    assert "2 difference(s) in 1 transfer(s)" in reported.stderr
    async with admin_store.pool.acquire() as conn:
        assert [d.column for d in await rebuild.apply(conn)] == ["stage", "total_value_usd"]
        assert await rebuild.check(conn) == []


async def test_a_row_without_events_is_extra_and_the_worker_may_not_remove_it(
    admin_store: AuditStore, database: Database, admin_conn: asyncpg.Connection
) -> None:
    await admin_conn.execute(
        """INSERT INTO transfers (transfer_id, stage, created_at, stage_entered_at, updated_at, last_seq, head_hash)
           VALUES ('TPT-RB-GHOST', 'SHIPMENT', now(), now(), now(), 7, 'ff')""")
    reported = tpt(database.admin_url, "audit", "rebuild")
    assert reported.returncode == 1 and "TPT-RB-GHOST  row extra: no events for it" in reported.stdout
    refused = tpt(database.worker_url, "audit", "rebuild", "--apply")
    assert refused.returncode == 3 and "needs the database owner's URL" in refused.stderr
    async with admin_store.pool.acquire() as conn:
        assert [(d.transfer_id, d.column) for d in await rebuild.apply(conn)] == [("TPT-RB-GHOST", "(row)")]
    assert await admin_conn.fetchval("SELECT count(*) FROM transfers WHERE transfer_id = 'TPT-RB-GHOST'") == 0


async def test_appends_wait_for_a_rebuild_when_the_projection_lags(
    audit_store: AuditStore, admin_store: AuditStore, admin_conn: asyncpg.Connection
) -> None:
    await seed(audit_store, "TPT-RB-LAG", "CZ")
    await admin_conn.execute("DELETE FROM transfers WHERE transfer_id = 'TPT-RB-LAG'")
    fifth = event("TPT-RB-LAG", 5, "STAGE_ENTERED", Stage.SHIPMENT)
    with pytest.raises(ProjectionBehind, match="tpt audit rebuild --apply"):
        await audit_store.append(fifth)
    async with admin_store.pool.acquire() as conn:
        assert [(d.transfer_id, d.column) for d in await rebuild.apply(conn)] == [("TPT-RB-LAG", "(row)")]
    stored = await audit_store.append(fifth)
    assert stored.seq == 5
    checked, breaks = await audit_store.verify("TPT-RB-LAG")
    assert (checked, breaks) == (5, [])
