"""Record the workflow histories replayed by tests/replay/test_replay.py.

Run it (with a stack from `tpt dev` up and no demo) only when a workflow change is meant to alter commands, and
commit the new files beside the old ones: old histories must keep replaying (guard changes with
`workflow.patched`). Usage: .venv/bin/python -m tests.replay.record_histories
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.keys import TEST_KEYS
from tests.workflow.conftest import example
from tpt.client import TransferClient, connect
from tpt.demo import SimulatedParties
from tpt.ids import backfill_id, shipment_id
from tpt.settings import Settings
from tpt.stages import Stage

HERE = Path(__file__).resolve().parent


async def record(name: str, example_name: str) -> None:
    settings = Settings()
    tpt = TransferClient(await connect(settings), settings.task_queue)
    request = example(example_name)
    await register_keys(settings)
    await tpt.submit(request)
    parties = SimulatedParties(tpt, request, print, TEST_KEYS)
    while not (status := await tpt.status(request.transfer_id)).stage.is_terminal:
        await parties.act(status)
    assert status.stage is Stage.COMPLETED
    await tpt.handle(request.transfer_id).result()
    for kind, workflow_id in (("transfer", request.transfer_id), ("shipment", shipment_id(request.transfer_id)),
                              ("backfill", backfill_id(request.transfer_id))):
        history = await tpt.client.get_workflow_handle(workflow_id).fetch_history()
        (HERE / f"{name}-{kind}.json").write_text(json.dumps(json.loads(history.to_json()), indent=1))


async def register_keys(settings: Settings) -> None:
    """The parties sign their decisions: their (this run's) keys go into the stack's signer registry."""
    import asyncpg

    from tpt.cli_support import audit_url
    from tpt.keys import store

    conn = await asyncpg.connect(audit_url(settings))
    try:
        await store.add_all(conn, TEST_KEYS.registrations(), added_by="record_histories")
    finally:
        await conn.close()


# Bump when recording histories of a new workflow version; v1: audit appends as local activities,
# v2: as regular activities (patch "audit-append-as-activity").
VERSION = "v2"

if __name__ == "__main__":
    asyncio.run(record(f"{VERSION}-fast-track", "javelin-lt"))
    asyncio.run(record(f"{VERSION}-full-path", "patriot-de"))
