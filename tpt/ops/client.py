"""Finding stuck steps (visibility + each workflow's `stuck_step` query) and retrying or skipping them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from temporalio.client import Client, WorkflowQueryFailedError, WorkflowUpdateFailedError
from temporalio.service import RPCError

from tpt import search_attributes as sa
from tpt.ids import backfill_id, shipment_id, transfer_id_of
from tpt.messages import OpsAction, StuckStep

ATTENTION_QUERY = f"{sa.NEEDS_ATTENTION.name} = true AND ExecutionStatus = 'Running'"


class StuckTransfer(BaseModel):
    transfer_id: str
    workflow_id: str
    stage: str | None
    step: str | None
    reason: str | None
    irreversible: bool
    since: datetime | None


class NothingStuck(LookupError):
    pass


class OpsRefused(RuntimeError):
    pass


class OpsClient:
    def __init__(self, client: Client):
        self.client = client

    async def stuck(self, query: str | None = None) -> list[StuckTransfer]:
        """Every running workflow flagged NeedsAttention (optionally narrowed by a visibility query)."""
        where = f"({ATTENTION_QUERY}) AND ({query})" if query else ATTENTION_QUERY
        found = []
        async for execution in self.client.list_workflows(where):
            step = await self._stuck_step(execution.id)
            stage = await self._stage(transfer_id_of(execution.id))
            found.append(StuckTransfer(
                transfer_id=transfer_id_of(execution.id), workflow_id=execution.id, stage=stage,
                step=step.step if step else None, irreversible=bool(step and step.irreversible),
                reason=step.reason if step else str(execution.typed_search_attributes.get(sa.BLOCKED_REASON)),
                since=step.since if step else None,
            ))
        return sorted(found, key=lambda s: (s.since is None, s.since, s.transfer_id))

    async def retry(self, transfer_id: str, action: OpsAction) -> StuckStep:
        return await self._decide(transfer_id, "ops_retry", action)

    async def skip(self, transfer_id: str, action: OpsAction) -> StuckStep:
        return await self._decide(transfer_id, "ops_skip", action)

    async def _decide(self, transfer_id: str, update: str, action: OpsAction) -> StuckStep:
        workflow_id = await self._where_stuck(transfer_id)
        try:
            return await self.client.get_workflow_handle(workflow_id).execute_update(
                update, action, result_type=StuckStep)
        except WorkflowUpdateFailedError as err:
            raise OpsRefused(str(getattr(err.cause, "message", err.cause))) from err

    async def _where_stuck(self, transfer_id: str) -> str:
        """The transfer's own workflow or the child whose step waits for an operator."""
        for workflow_id in (transfer_id, shipment_id(transfer_id), backfill_id(transfer_id)):
            if await self._stuck_step(workflow_id):
                return workflow_id
        raise NothingStuck(f"no step of {transfer_id} is waiting for an operator (see `tpt ops stuck`)")

    async def _stuck_step(self, workflow_id: str) -> StuckStep | None:
        try:
            return await self.client.get_workflow_handle(workflow_id).query("stuck_step", result_type=StuckStep)
        except (RPCError, WorkflowQueryFailedError):
            return None  # no such workflow (a child not started yet), closed, or one without operable steps

    async def _stage(self, transfer_id: str) -> str | None:
        try:
            described = await self.client.get_workflow_handle(transfer_id).describe()
        except RPCError:
            return None
        return described.typed_search_attributes.get(sa.TRANSFER_STAGE)
