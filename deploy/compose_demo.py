"""`docker compose run --rm demo`: submit the demo transfer to the compose stack and drive it to COMPLETED.

The same simulated donor signers, U.S. reviewer and custodians as `tpt dev --demo`, but against the running
cluster and its workers; prints the transfer's page in the stack's Web UI (UI_URL, default localhost:8080).
Every side effect, the audit history included, happens in the workers; the demo itself only registers its
parties' signing keys in the signer registry (as the audit database's owner, TPT_DATABASE_URL) and signs their
decisions with them.
"""

from __future__ import annotations

import asyncio
import os

from tpt.client import TransferClient, connect
from tpt.demo import demo_request, drive, register_demo_keys
from tpt.settings import Settings


async def main() -> None:
    settings = Settings()
    client = TransferClient(await connect(settings), settings.task_queue)
    request = demo_request()
    print(f"submitting {request.transfer_id} to {settings.temporal_address} "
          f"(namespace {settings.temporal_namespace}, task queue {settings.task_queue})", flush=True)
    keys = await register_demo_keys(settings, request)
    status = await drive(client, request, keys=keys)
    ui = os.environ.get("UI_URL", "http://localhost:8080").rstrip("/")
    print(f"{request.transfer_id} reached {status.stage.value}; see it in the UI:\n"
          f"  {ui}/namespaces/{settings.temporal_namespace}/workflows/{request.transfer_id}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
