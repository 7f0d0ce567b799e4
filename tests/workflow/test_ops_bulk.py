"""Bulk operations: `tpt ops retry --query …` over twenty stuck transfers, with a dry run that changes nothing."""

from __future__ import annotations

import asyncio

from temporalio.client import Client

from tpt.audit.store import AuditStore
from tpt.client import TransferClient
from tpt.ops.client import OpsClient
from tpt.stages import Stage

from ..conftest import eventually
from ..keys import OPERATOR_ID, TEST_KEYS
from .conftest import example, running_worker
from .test_ops import FAST_RETRY, FaultyNotifier, deliver, ops_env, tpt_command

COUNT = 20
STEP = "notify security cooperation offices"


async def test_a_bulk_retry_heals_twenty_stuck_transfers_after_a_dry_run_that_changes_nothing(
    client: Client, audit_store: AuditStore, task_queue: str
) -> None:
    tpt, ops, notifier = TransferClient(client, task_queue, TEST_KEYS), OpsClient(client), FaultyNotifier()
    requests = [example("javelin-lt") for _ in range(COUNT)]
    ids = {r.transfer_id for r in requests}
    env = ops_env(client, task_queue)
    mine = f"TaskQueue = '{task_queue}'"  # this test's transfers only: other tests share the server
    retry = ("ops", "retry", "--query", mine, "--operator", OPERATOR_ID, "--reason", "SCO gateway restored")

    async def stuck_ids() -> set[str]:
        return {s.transfer_id for s in await ops.stuck(mine, slas={}) if s.waits_for_operator}

    async def all_stuck() -> bool:
        return await stuck_ids() == ids

    async with running_worker(client, audit_store, task_queue, notifier):  # type: ignore[arg-type]
        await asyncio.gather(*(tpt.submit(r, step_retry=FAST_RETRY) for r in requests))
        await asyncio.gather(*(deliver(tpt, r) for r in requests))
        await eventually(all_stuck, timeout=90)
        histories = {tid: await audit_store.history(tid) for tid in ids}

        code, out, err = await tpt_command(env, *retry, "--dry-run")
        assert code == 0, err
        assert f"{COUNT} transfer(s) would be changed by retry, 0 refused" in out
        assert all(f"would retry: {tid}: '{STEP}' (SHIPMENT, stuck since" in out for tid in ids)
        code, out, err = await tpt_command(env, "ops", "skip", "--all-stuck", "--operator", OPERATOR_ID,
                                           "--reason", "dry run only", "--dry-run")
        assert code == 0 and all(tid in out for tid in ids), err
        code, _, err = await tpt_command(env, *retry)  # no terminal to confirm on, and no --yes
        assert code == 2 and "--yes" in err, err
        await asyncio.sleep(0.5)
        assert await stuck_ids() == ids  # the dry runs and the unconfirmed run changed nothing
        assert {tid: await audit_store.history(tid) for tid in ids} == histories

        notifier.recover()
        code, out, err = await tpt_command(env, *retry, "--yes", "--concurrency", "8")
        assert code == 0 and f"retry: {COUNT} done, 0 refused, 0 failed" in out, out + err

        async def all_delivered() -> bool:
            statuses = await asyncio.gather(*(tpt.status(tid) for tid in ids))
            return all(s.stage is Stage.BACKFILL and s.delivered_at for s in statuses)

        await eventually(all_delivered, timeout=60)
        assert await stuck_ids() == set()
        await asyncio.gather(*(tpt.handle(tid).terminate("test done") for tid in ids))
    for tid in ids:
        events = await audit_store.history(tid)
        types = [e.event_type for e in events]
        [retried] = [e for e in events if e.event_type == "OPS_RETRY"]
        assert (retried.actor, retried.role, retried.payload["step"], retried.payload["reason"]) == (
            OPERATOR_ID, "operator", STEP, "SCO gateway restored")
        assert types.index("NEEDS_ATTENTION") < types.index("OPS_RETRY") < types.index("SCO_NOTIFIED")
        assert await audit_store.verify(tid) == (len(events), [])
