"""Client SDK: submit transfers, send decisions, read their status."""

from __future__ import annotations

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.contrib.pydantic import pydantic_data_converter

from tpt.contract import TransferRequest
from tpt.messages import BackfillDelivery, Handover, SignOff, TransferStatus, UsDecision, Withdrawal
from tpt.settings import Settings


async def connect(settings: Settings) -> Client:
    return await Client.connect(
        settings.temporal_address, namespace=settings.temporal_namespace, data_converter=pydantic_data_converter
    )


class TransferClient:
    def __init__(self, client: Client, task_queue: str):
        self.client = client
        self.task_queue = task_queue

    @classmethod
    async def connect(cls, settings: Settings) -> TransferClient:
        return cls(await connect(settings), settings.task_queue)

    async def submit(self, request: TransferRequest) -> WorkflowHandle:
        from workflows.transfer import TransferWorkflow, initial_search_attributes

        return await self.client.start_workflow(
            TransferWorkflow.run, request, id=request.transfer_id, task_queue=self.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=initial_search_attributes(request),
            static_summary=_summary(request),
        )

    def handle(self, transfer_id: str) -> WorkflowHandle:
        return self.client.get_workflow_handle(transfer_id, result_type=TransferStatus)

    async def status(self, transfer_id: str) -> TransferStatus:
        return await self.handle(transfer_id).query("status", result_type=TransferStatus)

    async def sign_off(self, transfer_id: str, decision: SignOff) -> TransferStatus:
        return await self._update(transfer_id, "sign_off", decision)

    async def us_decision(self, transfer_id: str, decision: UsDecision) -> TransferStatus:
        return await self._update(transfer_id, "us_decision", decision)

    async def record_handover(self, transfer_id: str, handover: Handover) -> TransferStatus:
        return await self._update(transfer_id, "record_handover", handover)

    async def record_backfill(self, transfer_id: str, delivery: BackfillDelivery) -> TransferStatus:
        return await self._update(transfer_id, "record_backfill", delivery)

    async def withdraw(self, transfer_id: str, withdrawal: Withdrawal) -> TransferStatus:
        return await self._update(transfer_id, "withdraw", withdrawal)

    async def _update(self, transfer_id: str, name: str, message: object) -> TransferStatus:
        return await self.handle(transfer_id).execute_update(name, message, result_type=TransferStatus)


def _summary(request: TransferRequest) -> str:
    return (f"{request.donor} → {request.recipient}: {len(request.items)} line item(s), "
            f"${request.total_value_usd:,.0f}")
