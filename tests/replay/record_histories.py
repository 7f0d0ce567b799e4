"""Record the workflow histories replayed by tests/replay/test_replay.py.

Run it only when a workflow change is meant to alter commands, and commit the new files beside the old ones: old
histories must keep replaying (guard changes with `workflow.patched`). It brings up its own scratch stack (a
Temporal dev server, a scratch Postgres database, the worker in this process; as `tpt bench` does) with payloads
encrypted under REPLAY_KEYS, so the histories are what production writes and replay needs the keyring, as an
operator's would. Usage: .venv/bin/python -m tests.replay.record_histories
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

from pydantic import SecretStr

from tests.conftest import register_test_keys
from tests.keys import TEST_KEYS
from tests.workflow.conftest import example
from tpt.bench.stack import in_process_workers, scratch_stack
from tpt.client import TransferClient
from tpt.demo import SimulatedParties
from tpt.ids import backfill_id, shipment_id
from tpt.settings import Settings
from tpt.stages import Stage

HERE = Path(__file__).resolve().parent

# A test key, public on purpose: it only ever encrypts these recorded histories (v3 on).
REPLAY_KEYS = f"replay:{base64.b64encode(b'tpt replay histories, not secret').decode()}"

# Bump when recording histories of a new workflow version; v1: audit appends as local activities,
# v2: as regular activities (patch "audit-append-as-activity"); v3: signed decisions with the signer registry
# (patch "signed-decisions"), the shipment's EEUM custody step ("shipment-eeum-custody-step"), payloads encrypted.
VERSION = "v3"


async def record(settings: Settings, name: str, example_name: str) -> None:
    async with scratch_stack(settings) as stack, in_process_workers(stack):
        await register_test_keys(stack.db_url)
        tpt = TransferClient(stack.client, stack.settings.task_queue, TEST_KEYS)
        request = example(example_name)
        await tpt.submit(request)
        parties = SimulatedParties(tpt, request, print, TEST_KEYS)
        while not (status := await tpt.status(request.transfer_id)).stage.is_terminal:
            if not await parties.act(status):
                await asyncio.sleep(0.1)
        assert status.stage is Stage.COMPLETED
        await tpt.handle(request.transfer_id).result()
        for kind, workflow_id in (("transfer", request.transfer_id), ("shipment", shipment_id(request.transfer_id)),
                                  ("backfill", backfill_id(request.transfer_id))):
            history = await stack.client.get_workflow_handle(workflow_id).fetch_history()
            (HERE / f"{name}-{kind}.json").write_text(json.dumps(json.loads(history.to_json()), indent=1))


async def main() -> None:
    settings = Settings(codec_keys=SecretStr(REPLAY_KEYS), codec_key_file=None)
    await record(settings, f"{VERSION}-fast-track", "javelin-lt")
    await record(settings, f"{VERSION}-full-path", "patriot-de")


if __name__ == "__main__":
    asyncio.run(main())
