"""The Temporal dev server stopped and started again on the same SQLite file mid-flight (issue 11, point 2).

The worker process and the test's client stay up through the restart and reconnect on their own; every transfer
continues from where its history left it and completes, with the audit history exactly as the histories say.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from temporalio.client import Client

from tpt.client import TransferClient

from ..conftest import Database
from .conftest import (
    RESTART_TRANSFERS,
    SERVER_RESTARTS,
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
    until,
    worker_process,
)

pytestmark = pytest.mark.timeout(budget(RESTART_TRANSFERS, 120 * SERVER_RESTARTS) + 120)


async def test_temporal_server_restart_mid_flight_and_transfers_continue(
    temporal: TemporalStack, temporal_client: Client, database: Database, reliability_queue: str, scratch: Path,
) -> None:
    rng = rng_for("server-restart")
    started = time.monotonic()
    fleet = Fleet(TransferClient(temporal_client, reliability_queue), fleet_requests(RESTART_TRANSFERS, "TPT-RESTART"))
    restarts: list[dict[str, object]] = []
    with worker_process(temporal_client, temporal.address, reliability_queue, database.worker_url,
                        scratch) as worker:
        await worker.start()
        first_pid = worker.pid
        await fleet.submit_all()

        async def restart_at_random_points() -> None:
            for point in fault_points(rng, SERVER_RESTARTS, RESTART_TRANSFERS, 0.1, 0.6):
                if not await until(lambda p=point: fleet.decisions >= p, fleet):
                    return
                down = rng.uniform(1.0, 4.0)
                restarts.append({"after_decisions": fleet.decisions, "in_flight": fleet.in_flight(),
                                 "down_seconds": round(down, 1)})
                temporal.stop()
                await asyncio.sleep(down)
                temporal.start()

        chaos = asyncio.create_task(restart_at_random_points())
        await fleet.run(budget(RESTART_TRANSFERS, 60 * SERVER_RESTARTS))
        await chaos
        crashed = worker.crashed()
        assert crashed is None, f"the worker did not survive the server restart: {crashed}"
        assert worker.pid == first_pid and worker.starts == 1

    async with open_store(database.worker_url) as store:
        audit = await check_audit(temporal_client, store, fleet.results())
    differences = await projection_differences(database.admin_url)
    record("server_restart", **fleet.figures(), faults_injected=len(restarts), restarts=restarts,
           projection_differences=len(differences), seconds=round(time.monotonic() - started, 1), **audit.figures())

    assert len(restarts) == SERVER_RESTARTS, f"only {len(restarts)} restart(s) happened while transfers were in flight"
    assert all(r["in_flight"] for r in restarts)
    fleet.assert_all_completed()
    assert differences == [], differences[:10]
    audit.assert_clean()
