"""`tpt worker` as the container runs it: probes answer, and SIGTERM drains a real in-flight audit activity.

The activity is held in flight by locking `audit_events` from an admin connection, so the worker's append
blocks inside Postgres; the lock is released only after SIGTERM. A graceful worker finishes that activity
(the event lands, Temporal records the completion), then exits 0 and its probes go away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from tpt.client import TransferClient
from tpt.contract import TransferRequest
from tpt.demo import demo_request

from ..conftest import Database, free_port, server_dir

TPT = str(Path(sys.executable).parent / "tpt")
GRACE_SECONDS = 20


async def http_status(port: int, path: str) -> int | None:
    """The status code of GET path, or None when nothing answers."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
    except (OSError, TimeoutError):
        return None
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 5)
        return int(status_line.split()[1]) if status_line else None
    finally:
        writer.close()


def completed_activities(events: list[HistoryEvent]) -> list[tuple[str, int]]:
    """(activity type, attempt) of every activity whose completion reached Temporal, regular or local."""
    scheduled = {e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name for e in events
                 if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED}
    started = [e.activity_task_started_event_attributes for e in events
               if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED]
    attempts = {a.scheduled_event_id: a.attempt for a in started}
    done = []
    for e in events:
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            sid = e.activity_task_completed_event_attributes.scheduled_event_id
            done.append((scheduled[sid], attempts.get(sid, 1)))
        elif e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            marker = e.marker_recorded_event_attributes
            if marker.marker_name == "core_local_activity" and "data" in marker.details:
                data = json.loads(marker.details["data"].payloads[0].data)  # the SDK core's local-activity record
                done.append((data["activity_type"], data["attempt"]))
    return done


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:]


async def until(predicate, timeout: float, what: str, log: Path):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := await predicate():
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what} within {timeout}s; worker output:\n{tail(log)}")


@pytest_asyncio.fixture(loop_scope="session")
async def worker_process(
    dev_env: WorkflowEnvironment, database: Database, task_queue: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int, Path]]:
    with server_dir("worker") as scratch:
        port, log = free_port(), scratch / "worker.log"
        env = os.environ | {
            "TPT_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
            "TPT_TEMPORAL_NAMESPACE": dev_env.client.namespace,
            "TPT_TASK_QUEUE": task_queue,
            "TPT_DATABASE_URL": database.worker_url,  # the worker only ever gets the least-privilege role
            "TPT_HEALTH_PORT": str(port),
            "TPT_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS),
            "TPT_LOG_FORMAT": "json",
            "TPT_STATE_DIR": str(scratch / "state"),
        }
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(TPT, "worker", env=env, stdout=out, stderr=out)
        try:
            yield proc, port, log
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_sigterm_drains_an_in_flight_audit_append_then_exits_0(
    worker_process: tuple[asyncio.subprocess.Process, int, Path], dev_env: WorkflowEnvironment,
    database: Database, task_queue: str,
) -> None:
    proc, port, log = worker_process

    async def ready() -> bool:
        return await http_status(port, "/readyz") == 200

    await until(ready, 60, "/readyz never answered 200", log)
    assert await http_status(port, "/healthz") == 200
    assert await http_status(port, "/nope") == 404

    admin = await asyncpg.connect(database.admin_url)
    admin_probe = await asyncpg.connect(database.admin_url)
    blocker = admin.transaction()
    await blocker.start()
    await admin.execute("LOCK TABLE audit_events IN ACCESS EXCLUSIVE MODE")  # every append now waits on us
    try:
        request = TransferRequest.model_validate(
            demo_request().model_dump() | {"transfer_id": f"TPT-DRAIN-{uuid.uuid4().hex[:8].upper()}"}
        )
        handle = await TransferClient(dev_env.client, task_queue).submit(request)

        async def audit_append_in_flight() -> bool:  # the worker's append is waiting on our lock
            return bool(await admin_probe.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = 'tpt_worker' AND datname = $1 "
                "AND wait_event_type = 'Lock'", database.name))

        await until(audit_append_in_flight, 30, "the audit append never started", log)

        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)

        async def draining() -> bool:
            return await http_status(port, "/readyz") == 503

        await until(draining, 5, "/readyz did not turn 503 on SIGTERM", log)
        assert await http_status(port, "/healthz") == 200, "alive while draining"
        await asyncio.sleep(1.5)
        assert proc.returncode is None, "the worker left before its in-flight activity finished"
    finally:
        await blocker.rollback()  # releases the lock: the blocked append proceeds
        await admin.close()
        await admin_probe.close()

    code = await asyncio.wait_for(proc.wait(), GRACE_SECONDS + 15)
    elapsed = time.monotonic() - sent
    assert code == 0, tail(log)
    assert elapsed < GRACE_SECONDS, f"drain took {elapsed:.1f}s: the activity was cancelled, not finished"
    assert await http_status(port, "/healthz") is None, "probes must go away with the process"

    conn = await asyncpg.connect(database.admin_url)
    try:
        recorded = await conn.fetchval("SELECT count(*) FROM audit_events WHERE transfer_id = $1", request.transfer_id)
    finally:
        await conn.close()
    assert recorded >= 1, "the drained append must have landed"
    events = [e async for e in handle.fetch_history_events()]
    assert ("record_audit_event", 1) in completed_activities(events), "Temporal must learn the drained result"
    assert EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED not in [e.event_type for e in events]
    with contextlib.suppress(RPCError):  # the transfer waits for a sign-off nobody will send
        await handle.terminate("drain test done")
