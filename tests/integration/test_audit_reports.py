"""The reviewer's queries on seeded events: transfers by stage, donor and age; time spent in each stage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from tpt.audit import reports
from tpt.audit.events import NewAuditEvent, event_id
from tpt.audit.store import AuditStore
from tpt.stages import Stage

from ..conftest import Database

TPT = str(Path(sys.executable).parent / "tpt")
NOW = datetime.now(UTC).replace(microsecond=0)
DAY = timedelta(days=1)

# (transfer, donor, [(days before NOW, stage entered)]); events within a stage do not restart its clock.
SEEDED = [
    ("TPT-REP-1", "DE", [(10, Stage.REQUESTED), (9, Stage.ALLY_SIGNOFF), (8, Stage.ALLY_SIGNOFF),
                         (6, Stage.US_REVIEW), (5, Stage.COMPLETED)]),
    ("TPT-REP-2", "FR", [(4, Stage.REQUESTED), (2, Stage.ALLY_SIGNOFF)]),
    ("TPT-REP-3", "DE", [(1, Stage.REQUESTED)]),
]


def seeded_events(transfer_id: str, donor: str, steps: list[tuple[int, Stage]]) -> list[NewAuditEvent]:
    events = []
    for n, (days_ago, stage) in enumerate(steps, start=1):
        kind = "TRANSFER_REQUESTED" if n == 1 else "STAGE_ENTERED"
        events.append(NewAuditEvent(
            event_id=event_id(transfer_id, kind, n), transfer_id=transfer_id, event_type=kind, stage=stage,
            actor="tpt-engine", role="system", workflow_time=NOW - days_ago * DAY,
            payload={"donor": donor, "recipient": "UA"} if n == 1 else {"to": stage.value},
        ))
    return events


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def seeded(audit_store: AuditStore) -> AsyncIterator[asyncpg.Pool]:
    for transfer_id, donor, steps in SEEDED:
        for event in seeded_events(transfer_id, donor, steps):
            await audit_store.append(event)
    yield audit_store.pool


async def transfer_ids(pool: asyncpg.Pool, **filters: object) -> list[str]:
    async with pool.acquire() as conn:
        return [t.transfer_id for t in await reports.transfers(conn, NOW, **filters)]  # type: ignore[arg-type]


@pytest.mark.parametrize(("filters", "expected"), [
    ({}, ["TPT-REP-1", "TPT-REP-2", "TPT-REP-3"]),
    ({"stage": "ALLY_SIGNOFF"}, ["TPT-REP-2"]),
    ({"stage": "COMPLETED"}, ["TPT-REP-1"]),
    ({"donor": "DE"}, ["TPT-REP-1", "TPT-REP-3"]),
    ({"older_than": 2 * DAY}, ["TPT-REP-1", "TPT-REP-2"]),
    ({"donor": "DE", "older_than": 2 * DAY}, ["TPT-REP-1"]),
    ({"stage": "SHIPMENT"}, []),
])
async def test_transfers_by_stage_donor_and_age(seeded: asyncpg.Pool, filters: dict[str, object],
                                                expected: list[str]) -> None:
    assert await transfer_ids(seeded, **filters) == expected


async def test_transfer_lines_carry_age_and_time_in_stage(seeded: asyncpg.Pool) -> None:
    async with seeded.acquire() as conn:
        first = (await reports.transfers(conn, NOW))[0]
    assert (first.transfer_id, first.stage, first.donor, first.recipient) == ("TPT-REP-1", "COMPLETED", "DE", "UA")
    assert (first.age_days, first.in_stage_days) == (10.0, 5.0)


async def test_time_in_each_stage_counts_open_stages_and_skips_terminal_ones(seeded: asyncpg.Pool) -> None:
    async with seeded.acquire() as conn:
        times = await reports.stage_times(conn, NOW)
    days = 86400.0
    assert [(t.stage, t.count, t.open) for t in times] == [
        ("REQUESTED", 3, 1), ("ALLY_SIGNOFF", 2, 1), ("US_REVIEW", 1, 0)]
    requested, signoff, review = times
    # REQUESTED lasted 1 d, 2 d and (still open) 1 d; ALLY_SIGNOFF 3 d and (open) 2 d; US_REVIEW 1 d.
    assert (requested.median_seconds, requested.p90_seconds, requested.max_seconds) == pytest.approx(
        (1 * days, 1.8 * days, 2 * days))
    assert (signoff.median_seconds, signoff.p90_seconds, signoff.max_seconds) == pytest.approx(
        (2.5 * days, 2.9 * days, 3 * days))
    assert (review.median_seconds, review.p90_seconds, review.max_seconds) == pytest.approx((days, days, days))


def tpt(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"TPT_DATABASE_URL": url, "TPT_LOG_FORMAT": "json"}
    return subprocess.run([TPT, *args], env=env, capture_output=True, text=True)


async def test_the_report_commands(seeded: asyncpg.Pool, database: Database) -> None:
    listed = tpt(database.worker_url, "audit", "transfers", "--donor", "de", "--older-than", "2", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["transfer_id"], r["stage"], r["donor"]) for r in rows] == [("TPT-REP-1", "COMPLETED", "DE")]
    table = tpt(database.worker_url, "audit", "transfers", "--stage", "ally_signoff")
    assert table.stdout.split()[:4] == ["TPT-REP-2", "ALLY_SIGNOFF", "FR", "→"]
    assert "1 transfer(s)" in table.stderr

    sla = tpt(database.worker_url, "audit", "sla", "--json")
    assert sla.returncode == 0, sla.stderr
    stages = json.loads(sla.stdout)["stages"]
    assert [(s["stage"], s["count"], s["open"]) for s in stages] == [
        ("REQUESTED", 3, 1), ("ALLY_SIGNOFF", 2, 1), ("US_REVIEW", 1, 0)]
    text = tpt(database.worker_url, "audit", "sla").stdout.splitlines()
    assert text[0].split() == ["STAGE", "VISITS", "OPEN", "MEDIAN", "P90", "MAX"]
    assert text[3].split() == ["US_REVIEW", "1", "0", "1d", "00:00:00", "1d", "00:00:00", "1d", "00:00:00"]
