"""Postgres stopped for TPT_RELIABILITY_PG_OUTAGE_SECONDS (default 30) mid-flight (issue 11, point 3).

A dedicated Postgres (its own scratch directory and port, so the session's server is untouched) holds the audit
database. While it is down, audit appends fail and retry, the workflows wait (none fails, the worker stays up);
once it is back, the appends catch up, every transfer completes, the chains verify and the `transfers`
projection equals a rebuild from the events alone.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client

from tpt.client import TransferClient
from tpt.database import apply_migrations, ensure_database
from tpt.devstack.postgres import EmbeddedPostgres

from ..conftest import Database, free_port, register_test_keys
from .conftest import (
    OUTAGE_TRANSFERS,
    PG_OUTAGE_SECONDS,
    Fleet,
    TemporalStack,
    budget,
    check_audit,
    fault_points,
    fleet_requests,
    open_store,
    projection_differences,
    record,
    rng_for,
    scratch_dir,
    until,
    worker_process,
    workflow_statuses,
)

pytestmark = pytest.mark.timeout(budget(OUTAGE_TRANSFERS, 2 * PG_OUTAGE_SECONDS) + 180)


@pytest.fixture(scope="module")
def outage_postgres() -> Iterator[EmbeddedPostgres]:
    with scratch_dir("rel-pg") as where:
        server = EmbeddedPostgres(where / "data", free_port(), durable=False)
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def outage_database(outage_postgres: EmbeddedPostgres) -> Database:
    db = Database(outage_postgres, "tpt_outage")
    await ensure_database(outage_postgres.url(), db.name)
    await apply_migrations(db.admin_url)
    await register_test_keys(db.admin_url)
    return db


async def test_postgres_outage_mid_flight_appends_retry_and_catch_up(
    temporal: TemporalStack, temporal_client: Client, outage_postgres: EmbeddedPostgres, outage_database: Database,
    reliability_queue: str, scratch: Path,
) -> None:
    rng = rng_for("postgres-outage")
    started = time.monotonic()
    requests = fleet_requests(OUTAGE_TRANSFERS, "TPT-OUTAGE")
    ids = [r.transfer_id for r in requests]
    fleet = Fleet(TransferClient(temporal_client, reliability_queue), requests)
    outage: dict[str, object] = {}
    with worker_process(temporal_client, temporal.address, reliability_queue, outage_database.worker_url,
                        scratch) as worker:
        await worker.start()
        await fleet.submit_all()

        async def stop_postgres_for_a_while() -> None:
            [point] = fault_points(rng, 1, OUTAGE_TRANSFERS, 0.15, 0.4)
            if not await until(lambda: fleet.decisions >= point, fleet):
                return
            outage.update(after_decisions=fleet.decisions, in_flight=fleet.in_flight())
            outage_postgres.stop()
            down_at, decisions_before = time.monotonic(), fleet.decisions
            seen: Counter[str] = Counter()
            while time.monotonic() - down_at < PG_OUTAGE_SECONDS:
                await asyncio.sleep(min(5.0, PG_OUTAGE_SECONDS / 3))
                crashed = worker.crashed()
                assert crashed is None, f"the worker did not survive the Postgres outage: {crashed}"
                statuses = await workflow_statuses(temporal_client, ids)
                seen |= statuses
                assert set(statuses) <= {"RUNNING", "COMPLETED"}, f"during the outage: {statuses}"
            outage.update(seconds=round(time.monotonic() - down_at, 1), workflow_states_seen=dict(seen),
                          decisions_answered_while_down=fleet.decisions - decisions_before)
            outage_postgres.start()

        chaos = asyncio.create_task(stop_postgres_for_a_while())
        await fleet.run(budget(OUTAGE_TRANSFERS, 2 * PG_OUTAGE_SECONDS))
        await chaos
        crashed = worker.crashed()
        assert crashed is None, crashed
        assert worker.starts == 1

    async with open_store(outage_database.worker_url) as store:
        audit = await check_audit(temporal_client, store, fleet.results())
        chain_events, breaks = await store.verify()
    differences = await projection_differences(outage_database.admin_url)
    record("postgres_outage", **fleet.figures(), faults_injected=1 if outage else 0, outage=outage,
           chain_events_verified=chain_events, chain_breaks=len(breaks), projection_differences=len(differences),
           seconds=round(time.monotonic() - started, 1), **audit.figures())

    assert outage and outage["in_flight"], "the outage did not happen while transfers were in flight"
    fleet.assert_all_completed()
    assert audit.appends_retried > 0, "no audit append met the outage: it proved nothing"
    assert breaks == [], breaks
    assert differences == [], differences[:10]
    audit.assert_clean()
