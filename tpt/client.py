"""Client SDK: submit transfers, send decisions, read their status."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.contrib.pydantic import pydantic_data_converter

from tpt.contract import TransferRequest
from tpt.ids import backfill_id, shipment_id
from tpt.messages import (
    Amendment,
    BackfillRecord,
    BackfillStatus,
    Deadlines,
    EeumInventory,
    EmergencyWaiver,
    Handover,
    JointResolution,
    ShipmentStatus,
    SignOff,
    TransferInput,
    TransferStatus,
    UsDecision,
    Withdrawal,
)
from tpt.settings import Settings


async def connect(settings: Settings) -> Client:
    """A client for the configured Temporal: plaintext by default; TLS as soon as a CA, a client certificate or an
    API key is set (a managed Temporal). Raises ValueError naming the setting when a TLS file is missing or alone."""
    from pathlib import Path

    from temporalio.service import TLSConfig

    def pem(setting: str, path: Path | None) -> bytes | None:
        try:
            return path.read_bytes() if path else None
        except OSError as err:
            raise ValueError(f"{setting}={path} cannot be read: {err.strerror}") from err

    cert, key, ca = settings.temporal_tls_cert, settings.temporal_tls_key, settings.temporal_tls_ca
    if (cert is None) != (key is None):
        raise ValueError("TPT_TEMPORAL_TLS_CERT and TPT_TEMPORAL_TLS_KEY go together: set both for mutual TLS")
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    tls: TLSConfig | bool = False
    if cert or ca or api_key:
        tls = TLSConfig(server_root_ca_cert=pem("TPT_TEMPORAL_TLS_CA", ca),
                        client_cert=pem("TPT_TEMPORAL_TLS_CERT", cert),
                        client_private_key=pem("TPT_TEMPORAL_TLS_KEY", key))
    return await Client.connect(
        settings.temporal_address, namespace=settings.temporal_namespace, data_converter=pydantic_data_converter,
        tls=tls, api_key=api_key,
    )


class TransferClient:
    """Submit transfers and send decisions. Updates return the transfer's status once the decision is
    recorded in the audit history; a refusal raises with the workflow's reason."""

    def __init__(self, client: Client, task_queue: str):
        self.client = client
        self.task_queue = task_queue

    @classmethod
    async def connect(cls, settings: Settings) -> TransferClient:
        return cls(await connect(settings), settings.task_queue)

    async def submit(self, request: TransferRequest, deadlines: Deadlines | None = None,
                     policy_version: str | None = None) -> WorkflowHandle[Any, TransferStatus]:
        from workflows.transfer import TransferWorkflow, initial_search_attributes

        return await self.client.start_workflow(
            TransferWorkflow.run,
            TransferInput(request=request, deadlines=deadlines or Deadlines(), policy_version=policy_version),
            id=request.transfer_id, task_queue=self.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=initial_search_attributes(request),
            static_summary=_summary(request),
        )

    def handle(self, transfer_id: str) -> WorkflowHandle[Any, TransferStatus]:
        return self.client.get_workflow_handle(transfer_id, result_type=TransferStatus)

    async def status(self, transfer_id: str) -> TransferStatus:
        return await self.handle(transfer_id).query("status", result_type=TransferStatus)

    async def sign_off(self, transfer_id: str, decision: SignOff) -> TransferStatus:
        return await self._update(transfer_id, "sign_off", decision)

    async def amend(self, transfer_id: str, amendment: Amendment) -> TransferStatus:
        return await self._update(transfer_id, "amend", amendment)

    async def us_decision(self, transfer_id: str, decision: UsDecision) -> TransferStatus:
        return await self._update(transfer_id, "us_decision", decision)

    async def emergency_waiver(self, transfer_id: str, waiver: EmergencyWaiver) -> TransferStatus:
        return await self._update(transfer_id, "emergency_waiver", waiver)

    async def joint_resolution(self, transfer_id: str, resolution: JointResolution) -> TransferStatus:
        return await self._update(transfer_id, "joint_resolution", resolution)

    async def withdraw(self, transfer_id: str, withdrawal: Withdrawal) -> TransferStatus:
        return await self._update(transfer_id, "withdraw", withdrawal)

    async def record_eeum_inventory(self, transfer_id: str, inventory: EeumInventory) -> TransferStatus:
        return await self._update(transfer_id, "record_eeum_inventory", inventory)

    async def record_handover(self, transfer_id: str, handover: Handover) -> ShipmentStatus:
        handle = self.client.get_workflow_handle(shipment_id(transfer_id))
        return await handle.execute_update("record_handover", handover, result_type=ShipmentStatus)

    async def record_backfill(self, transfer_id: str, record: BackfillRecord) -> BackfillStatus:
        handle = self.client.get_workflow_handle(backfill_id(transfer_id))
        return await handle.execute_update("record_backfill", record, result_type=BackfillStatus)

    async def _update(self, transfer_id: str, name: str, message: object) -> TransferStatus:
        return await self.handle(transfer_id).execute_update(name, message, result_type=TransferStatus)


def _summary(request: TransferRequest) -> str:
    return (f"{request.donor} → {request.recipient}: {len(request.items)} line item(s), "
            f"${request.total_value_usd:,.0f}")
