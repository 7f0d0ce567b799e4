"""Helpers for workflow tests: example requests, a running worker, the simulated parties, audit assertions."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities.notify import DeliveryNotice
from tpt.audit.store import AuditStore
from tpt.client import TransferClient
from tpt.contract import TransferRequest
from tpt.demo import SimulatedParties
from tpt.messages import TransferStatus
from tpt.stages import Stage
from workers.transfer_worker import build_worker

from ..keys import TEST_KEYS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(name: str, **changes: Any) -> TransferRequest:
    """An example request under a fresh transfer id, with top-level fields changed."""
    data = json.loads((EXAMPLES / f"{name}.json").read_text())
    data |= {"transfer_id": f"TPT-T-{uuid.uuid4().hex[:12].upper()}"} | changes
    return TransferRequest.model_validate(data)


class RecordingNotifier:
    """The SCO notification adapter, faked at its interface."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, DeliveryNotice]] = []

    async def notify(self, office: str, notice: DeliveryNotice) -> str:
        self.sent.append((office, notice))
        return f"test:{office}:{len(self.sent)}"


@asynccontextmanager
async def running_worker(client: Client, store: AuditStore, task_queue: str,
                         notifier: RecordingNotifier | None = None) -> AsyncIterator[Worker]:
    async with build_worker(client, store, task_queue, notifier=notifier) as worker:
        yield worker


def quiet(_: str) -> None:
    pass


async def drive_until(tpt: TransferClient, request: TransferRequest, stop: Stage | None = None) -> TransferStatus:
    """Let the simulated parties act until the transfer reaches `stop` (or ends)."""
    parties = SimulatedParties(tpt, request, quiet, TEST_KEYS)
    while True:
        status = await tpt.status(request.transfer_id)
        if status.stage is stop or status.stage.is_terminal:
            return status
        await parties.act(status)


async def event_types(store: AuditStore, transfer_id: str) -> list[str]:
    return [e.event_type for e in await store.history(transfer_id)]


async def stages_entered(store: AuditStore, transfer_id: str) -> list[str]:
    return [e.payload["to"] for e in await store.history(transfer_id) if e.event_type == "STAGE_ENTERED"]


async def ended(tpt: TransferClient, transfer_id: str, timeout: float = 60.0) -> TransferStatus:
    """The final status, read by query: on the time-skipping server a long poll for the result can time out
    under load while the query answers at once."""
    from ..conftest import eventually

    async def final() -> TransferStatus | None:
        status = await tpt.status(transfer_id)
        return status if status.stage.is_terminal else None

    return await eventually(final, timeout=timeout)
