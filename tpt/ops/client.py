"""Operations on transfers: find the stuck ones, set them moving again, and put every action on the record.

- `stuck`: transfers whose step waits for an operator (visibility `NeedsAttention = true`, then each workflow's
  `stuck_step` query) and transfers over their stage's SLA (tpt/ops/slas.py; a visibility pre-filter on
  `TransferStage` and `StartTime`, then the `status` query), with the pending activity that keeps failing
  (DescribeWorkflowExecution) or, for a step whose retries ran out, its last failure from the history.
- `retry` / `skip`: the workflow's own `ops_retry` / `ops_skip` updates (validated and audited by the workflow).
- `pause_activity` / `unpause_activity` / `reset_activity`: Temporal's activity operations, raw service calls.
- `plan_reset` / `reset`: ResetWorkflowExecution to the start of a stage (tpt/ops/history.py), updates and signals
  not reapplied, then the new run records the reset (`ops_note`) with the operator and reason.
- `run_bulk`: any of these over many transfers with bounded concurrency.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, ResetReapplyExcludeType
from temporalio.api.failure.v1 import Failure
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.api.workflowservice.v1 import (
    GetWorkflowExecutionHistoryReverseRequest,
    PauseActivityRequest,
    ResetActivityRequest,
    ResetWorkflowExecutionRequest,
    UnpauseActivityRequest,
)
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from tpt import search_attributes as sa
from tpt.client import TransferClient
from tpt.ids import backfill_id, shipment_id, transfer_id_of
from tpt.messages import OpsAction, ShipmentStatus, StuckStep, TransferStatus
from tpt.ops.history import ResetPoint, ResetRefused, reset_point
from tpt.ops.messages import OpsNote, OpsNoteKind
from tpt.ops.slas import describe, stage_slas
from tpt.signing import Signer
from tpt.stages import Stage

TRANSFERS = "WorkflowType = 'TransferWorkflow'"
ATTENTION_QUERY = f"{sa.NEEDS_ATTENTION.name} = true AND ExecutionStatus = 'Running'"
DEFAULT_CONCURRENCY = 8
QUERY_TIMEOUT = 10.0  # seconds: a query no worker answers is given up, not waited for
NOTE_TIMEOUT = 60.0
T = TypeVar("T")


class StuckTransfer(BaseModel):
    transfer_id: str
    workflow_id: str  # where the stuck step or the failing activity is: the transfer or its shipment/backfill child
    stage: str | None
    step: str | None
    reason: str | None
    irreversible: bool
    since: datetime | None
    waits_for_operator: bool = False  # a step whose retries ran out: `ops retry` / `ops skip` act on it
    sla: timedelta | None = None  # set when the transfer has been in its stage longer than this
    attempts: int | None = None
    last_failure: str | None = None
    paused: bool = False


class NothingStuck(LookupError):
    pass


class OpsRefused(RuntimeError):
    pass


class BadQuery(ValueError):
    pass


@dataclass(frozen=True)
class ResetPlan:
    transfer_id: str
    run_id: str
    current_stage: str | None
    point: ResetPoint
    shipment_to_end: str | None  # a shipment child, no leg left yet, that the new run will start again

    def describe(self) -> str:
        undone = ", ".join(f"{name} ×{n}" for name, n in sorted(self.point.undone.items())) or "no decisions"
        later = f"; stages {' → '.join(self.point.stages_after)} undone" if self.point.stages_after else ""
        child = f"; shipment {self.shipment_to_end} (no leg left) ended and started again" if self.shipment_to_end \
            else ""
        return (f"{self.current_stage or '?'} → start of {self.point.stage.value} "
                f"(event {self.point.workflow_task_completed_event_id}); undoes {undone}{later}{child}")


@dataclass(frozen=True)
class ResetDone:
    transfer_id: str
    stage: str
    old_run_id: str
    new_run_id: str


@dataclass(frozen=True)
class BulkItem:
    transfer_id: str
    detail: str  # what would change
    refused: str | None = None  # why it would be refused (shown by --dry-run, not attempted)
    target: Any = None


@dataclass(frozen=True)
class BulkOutcome:
    transfer_id: str
    ok: bool
    message: str
    refused: bool = False


class OpsClient:
    query_timeout = QUERY_TIMEOUT

    def __init__(self, client: Client):
        self.client = client

    # --- finding -----------------------------------------------------------------------------------------

    async def stuck(self, query: str | None = None, slas: dict[Stage, timedelta | None] | None = None,
                    *, now: datetime | None = None, concurrency: int = DEFAULT_CONCURRENCY) -> list[StuckTransfer]:
        """Transfers waiting for an operator or over their stage's SLA, oldest first; `query` narrows the
        transfers by any visibility query (e.g. `DonorNation = 'DE'`)."""
        slas = stage_slas() if slas is None else slas
        now = now or datetime.now(UTC)
        allowed = await self._matching(query) if query else None
        gate = asyncio.Semaphore(concurrency)
        flagged = [e async for e in self._list(ATTENTION_QUERY)]
        found: dict[str, StuckTransfer] = {}
        for entry in await asyncio.gather(*(self._bounded(gate, self._flagged(e.id, e)) for e in flagged)):
            if allowed is None or entry.transfer_id in allowed:
                found.setdefault(entry.transfer_id, entry)
        sla_query = _sla_query(slas, now)
        if sla_query:
            candidates = [e.id async for e in self._list(sla_query)]
            candidates = [c for c in candidates if allowed is None or c in allowed]
            late = await asyncio.gather(*(self._bounded(gate, self._over_sla(c, slas, now, found.get(c)))
                                          for c in candidates))
            for over in late:
                if over is not None:
                    found[over.transfer_id] = over
        return sorted(found.values(), key=lambda s: (s.since is None, s.since, s.transfer_id))

    async def _flagged(self, workflow_id: str, execution: Any) -> StuckTransfer:
        tid = transfer_id_of(workflow_id)
        step = await self._stuck_step(workflow_id)
        stage = await self._stage(tid)
        entry = StuckTransfer(
            transfer_id=tid, workflow_id=workflow_id, stage=stage, step=step.step if step else None,
            irreversible=bool(step and step.irreversible), waits_for_operator=step is not None,
            reason=step.reason if step else execution.typed_search_attributes.get(sa.BLOCKED_REASON),
            since=step.since if step else None,
        )
        pending = await self._pending(workflow_id)
        if pending is not None:
            return await self._with_activity(entry, pending)
        if step is not None:
            attempts, failure = await self._last_failed_activity(workflow_id)
            return entry.model_copy(update={"attempts": attempts, "last_failure": failure})
        return entry

    async def _over_sla(self, transfer_id: str, slas: dict[Stage, timedelta | None], now: datetime,
                        flagged: StuckTransfer | None) -> StuckTransfer | None:
        status = await self._status(transfer_id)
        if status is None:
            return await self._unanswered(transfer_id, slas, now, flagged)
        if status.stage.is_terminal:
            return None
        sla = slas.get(status.stage)
        if sla is None or now - status.stage_entered_at <= sla:
            return None
        late = f"in {status.stage.value} for {describe(now - status.stage_entered_at)}, over its SLA of {describe(sla)}"
        if flagged is not None:
            return flagged.model_copy(update={"sla": sla, "reason": f"{flagged.reason}; {late}"})
        awaiting = f"; awaiting {'; '.join(status.awaiting)}" if status.awaiting else ""
        entry = StuckTransfer(transfer_id=transfer_id, workflow_id=transfer_id, stage=status.stage.value, step=None,
                              reason=late + awaiting, irreversible=False, since=status.stage_entered_at, sla=sla)
        child = {Stage.SHIPMENT: shipment_id(transfer_id), Stage.BACKFILL: backfill_id(transfer_id)}.get(status.stage)
        for workflow_id in (transfer_id, child):
            pending = await self._pending(workflow_id) if workflow_id else None
            if pending is not None:
                return await self._with_activity(entry.model_copy(update={"workflow_id": workflow_id}), pending)
        return entry

    async def _unanswered(self, transfer_id: str, slas: dict[Stage, timedelta | None], now: datetime,
                          flagged: StuckTransfer | None) -> StuckTransfer | None:
        """No worker answered the status query: what visibility knows (the pre-filter matched it)."""
        try:
            described = await self.client.get_workflow_handle(transfer_id).describe()
        except RPCError:
            return None
        stage = described.typed_search_attributes.get(sa.TRANSFER_STAGE)
        sla = slas.get(Stage(stage)) if stage in {s.value for s in Stage} else None
        if described.status is not WorkflowExecutionStatus.RUNNING or sla is None or flagged is not None:
            return flagged
        age = f"started {describe(now - described.start_time)} ago" if described.start_time else "started"
        return StuckTransfer(transfer_id=transfer_id, workflow_id=transfer_id, stage=stage, step=None,
                             irreversible=False, since=None, sla=sla,
                             reason=f"no worker answers its status query (is one running on its task queue?); "
                                    f"{age}, now in {stage}, whose SLA is {describe(sla)}")

    async def _with_activity(self, entry: StuckTransfer, pending: PendingActivityInfo) -> StuckTransfer:
        failure = await self._failure_text(pending.last_failure) if pending.HasField("last_failure") else None
        return entry.model_copy(update={
            "step": entry.step or pending.activity_type.name, "attempts": pending.attempt,
            "last_failure": failure, "paused": pending.paused,
        })

    async def _pending(self, workflow_id: str) -> PendingActivityInfo | None:
        """The pending activity in most trouble (paused, or failing over several attempts), if any."""
        try:
            described = await self.client.get_workflow_handle(workflow_id).describe()
        except RPCError:
            return None
        troubled = [p for p in described.raw_description.pending_activities
                    if p.paused or p.attempt > 1 or p.HasField("last_failure")]
        return max(troubled, key=lambda p: (p.paused, p.attempt), default=None)

    async def _last_failed_activity(self, workflow_id: str) -> tuple[int | None, str | None]:
        """Attempts and last failure of the latest activity that failed for good (reverse history, first page)."""
        try:
            page = await self.client.workflow_service.get_workflow_execution_history_reverse(
                GetWorkflowExecutionHistoryReverseRequest(
                    namespace=self.client.namespace, execution=WorkflowExecution(workflow_id=workflow_id),
                    maximum_page_size=200))
        except RPCError:
            return None, None
        failure: Failure | None = None
        started = 0
        for event in page.history.events:
            if failure is None and event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
                failure = event.activity_task_failed_event_attributes.failure
                started = event.activity_task_failed_event_attributes.started_event_id
            elif failure is None and event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
                failure = event.activity_task_timed_out_event_attributes.failure
                started = event.activity_task_timed_out_event_attributes.started_event_id
            elif failure is not None and event.event_id == started:
                return event.activity_task_started_event_attributes.attempt, await self._failure_text(failure)
        return None, await self._failure_text(failure) if failure is not None else None

    async def _failure_text(self, failure: Failure) -> str:
        """The failure as a person reads it: decrypted (tpt/codec) when the keyring allows, its cause included."""
        copy = Failure()
        copy.CopyFrom(failure)
        try:
            error: BaseException | None = await self.client.data_converter.decode_failure(copy)
        except Exception:
            return failure.message
        parts: list[str] = []
        while error is not None and len(parts) < 3:
            text = str(error.message if isinstance(error, ApplicationError) else error)
            kind = error.type if isinstance(error, ApplicationError) else None
            parts.append(f"{kind}: {text}" if kind and kind not in text else text)
            error = error.__cause__
        return " ← ".join(p for p in parts if p)

    # --- retry and skip ------------------------------------------------------------------------------------

    async def retry(self, transfer_id: str, action: OpsAction, signer: Signer | None = None) -> StuckStep:
        return await self._decide(transfer_id, "ops_retry", action, signer)

    async def skip(self, transfer_id: str, action: OpsAction, signer: Signer | None = None) -> StuckStep:
        return await self._decide(transfer_id, "ops_skip", action, signer)

    async def _decide(self, transfer_id: str, update: str, action: OpsAction, signer: Signer | None) -> StuckStep:
        workflow_id = await self._where_stuck(transfer_id)
        if signer is not None:  # the signature names the stuck step and since when: no replay on a later stall
            action = await TransferClient(self.client, "").sign_ops_action(transfer_id, action, update, signer)
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

    # --- Temporal's activity operations --------------------------------------------------------------------

    async def pause_activity(self, transfer_id: str, activity: str, action: OpsAction) -> str:
        """Pause a pending activity (no more attempts until unpaused); returns the workflow it belongs to."""
        workflow_id, pending = await self._find_activity(transfer_id, activity)
        await self._rpc(self.client.workflow_service.pause_activity(PauseActivityRequest(
            namespace=self.client.namespace, execution=WorkflowExecution(workflow_id=workflow_id),
            identity=_identity(action), id=pending.activity_id, reason=action.reason, request_id=str(uuid.uuid4()))))
        await self._note(transfer_id, OpsNote(kind=OpsNoteKind.PAUSE_ACTIVITY, operator=action.operator,
                                              reason=action.reason, details=_activity_details(workflow_id, pending)))
        return workflow_id

    async def unpause_activity(self, transfer_id: str, activity: str, action: OpsAction, *,
                               reset_attempts: bool = False) -> str:
        workflow_id, pending = await self._find_activity(transfer_id, activity)
        if not pending.paused:
            raise OpsRefused(f"activity {pending.activity_type.name} of {workflow_id} is not paused")
        await self._rpc(self.client.workflow_service.unpause_activity(UnpauseActivityRequest(
            namespace=self.client.namespace, execution=WorkflowExecution(workflow_id=workflow_id),
            identity=_identity(action), id=pending.activity_id, reset_attempts=reset_attempts)))
        await self._note(transfer_id, OpsNote(kind=OpsNoteKind.UNPAUSE_ACTIVITY, operator=action.operator,
                                              reason=action.reason, details=_activity_details(workflow_id, pending)
                                              | {"reset_attempts": str(reset_attempts).lower()}))
        return workflow_id

    async def reset_activity(self, transfer_id: str, activity: str, action: OpsAction, *,
                             keep_paused: bool = False) -> str:
        """Attempts back to 1 and a new attempt now rather than after its backoff; a paused activity is unpaused
        too unless keep_paused."""
        workflow_id, pending = await self._find_activity(transfer_id, activity)
        await self._rpc(self.client.workflow_service.reset_activity(ResetActivityRequest(
            namespace=self.client.namespace, execution=WorkflowExecution(workflow_id=workflow_id),
            identity=_identity(action), id=pending.activity_id, reset_heartbeat=True, keep_paused=keep_paused)))
        await self._note(transfer_id, OpsNote(kind=OpsNoteKind.RESET_ACTIVITY, operator=action.operator,
                                              reason=action.reason, details=_activity_details(workflow_id, pending)))
        return workflow_id

    async def _find_activity(self, transfer_id: str, activity: str) -> tuple[str, PendingActivityInfo]:
        """The pending activity named by its type (e.g. notify_security_cooperation_offices) or its id, in the
        transfer or one of its children."""
        seen: list[str] = []
        for workflow_id in (transfer_id, shipment_id(transfer_id), backfill_id(transfer_id)):
            try:
                described = await self.client.get_workflow_handle(workflow_id).describe()
            except RPCError:
                continue
            if described.status is not WorkflowExecutionStatus.RUNNING:
                continue
            for pending in described.raw_description.pending_activities:
                seen.append(f"{pending.activity_type.name} (id {pending.activity_id}, {workflow_id})")
                if activity in (pending.activity_type.name, pending.activity_id):
                    return workflow_id, pending
        raise NothingStuck(f"no pending activity '{activity}' in {transfer_id} or its children; pending now: "
                           f"{', '.join(seen) or 'none'}")

    # --- workflow reset ------------------------------------------------------------------------------------

    async def plan_reset(self, transfer_id: str, stage: Stage) -> ResetPlan:
        """Where a reset of the transfer's current run to the start of `stage` lands; ResetRefused if it may not."""
        handle = self.client.get_workflow_handle(transfer_id)
        try:
            described = await handle.describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise NothingStuck(f"no transfer {transfer_id}") from err
            raise
        if described.workflow_type != "TransferWorkflow":
            raise ResetRefused(f"{transfer_id} is a {described.workflow_type}; reset the transfer it belongs to, "
                               f"{transfer_id_of(transfer_id)}")
        run_id = described.run_id
        events = [e async for e in self.client.get_workflow_handle(transfer_id, run_id=run_id).fetch_history_events()]
        point = reset_point(transfer_id, events, stage)
        child = None
        if described.status is WorkflowExecutionStatus.RUNNING:
            starting = sum(e.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED
                           for e in events)
            answered = sum(e.event_type in (EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED,
                                            EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_FAILED)
                           for e in events)
            if starting > answered:
                raise ResetRefused(f"{transfer_id} is starting a child workflow right now; try again in a moment")
            shipment = await self._shipment(transfer_id)
            if shipment is not None:
                if shipment.handovers:
                    raise ResetRefused(f"{transfer_id}: leg '{shipment.handovers[0].leg}' has left, which is "
                                       "irreversible; a reset may not undo it")
                child = shipment_id(transfer_id)
        return ResetPlan(transfer_id, run_id, described.typed_search_attributes.get(sa.TRANSFER_STAGE), point, child)

    async def reset(self, plan: ResetPlan, action: OpsAction) -> ResetDone:
        """Reset to the plan's point, then have the new run record it. Updates and signals sent after the point
        are not reapplied: people send their decisions again, none counts twice."""
        reason = f"tpt ops reset --to-stage {plan.point.stage.value} by {action.operator}: {action.reason}"
        if plan.shipment_to_end:
            # The new run starts its shipment again under the same id: end this one first (no leg has left; a
            # reset of the parent does not end its children). Checked once more right before.
            shipment = await self._shipment(plan.transfer_id)
            if shipment is not None and shipment.handovers:
                raise ResetRefused(f"{plan.transfer_id}: a leg has left meanwhile; the reset is refused")
            if shipment is not None:
                await self.client.get_workflow_handle(plan.shipment_to_end).terminate(reason=reason)
        response = await self._rpc(self.client.workflow_service.reset_workflow_execution(ResetWorkflowExecutionRequest(
            namespace=self.client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=plan.transfer_id, run_id=plan.run_id),
            reason=reason, workflow_task_finish_event_id=plan.point.workflow_task_completed_event_id,
            request_id=str(uuid.uuid4()), identity=_identity(action),
            reset_reapply_exclude_types=[ResetReapplyExcludeType.RESET_REAPPLY_EXCLUDE_TYPE_UPDATE,
                                         ResetReapplyExcludeType.RESET_REAPPLY_EXCLUDE_TYPE_SIGNAL],
        )))
        new_run = response.run_id
        await self._end_orphaned_shipment(plan, reason)
        await self._first_task_done(plan.transfer_id, new_run)
        details: dict[str, str | int | None] = {
            "to_stage": plan.point.stage.value, "from_stage": plan.current_stage, "from_run_id": plan.run_id,
            "reset_to_event_id": plan.point.workflow_task_completed_event_id,
            "undone": ", ".join(f"{k} ×{v}" for k, v in sorted(plan.point.undone.items())) or None,
        }
        await self._note(plan.transfer_id, OpsNote(kind=OpsNoteKind.RESET, operator=action.operator,
                                                   reason=action.reason, details=details), run_id=new_run)
        return ResetDone(plan.transfer_id, plan.point.stage.value, plan.run_id, new_run)

    async def _end_orphaned_shipment(self, plan: ResetPlan, reason: str) -> None:
        """A shipment the replaced run started after the plan was made would block the new run's own: end it."""
        handle = self.client.get_workflow_handle(shipment_id(plan.transfer_id))
        try:
            described = await handle.describe()
        except RPCError:
            return
        if described.status is WorkflowExecutionStatus.RUNNING and described.parent_run_id == plan.run_id:
            await handle.terminate(reason=reason)

    async def _first_task_done(self, transfer_id: str, run_id: str) -> None:
        """Wait until a worker has taken over the new run (its first workflow task after the reset point), so the
        note reaches a run that knows it was reset."""
        handle = self.client.get_workflow_handle(transfer_id, run_id=run_id)
        deadline = asyncio.get_running_loop().time() + NOTE_TIMEOUT
        while True:
            reset_at, done = None, False
            async for event in handle.fetch_history_events():
                if (event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
                        and event.workflow_task_failed_event_attributes.new_run_id == run_id):
                    reset_at = event.event_id
                elif reset_at is not None and event.event_type in (
                        EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
                        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
                        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED):
                    done = True
            if done:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise OpsRefused(f"{transfer_id} was reset (new run {run_id}) but no worker has taken it over within "
                                 f"{NOTE_TIMEOUT:.0f}s, so the reset is not in the audit history yet; start a worker, "
                                 "then record it: `tpt ops record-reset` with the same operator and reason")
            await asyncio.sleep(0.1)

    async def record_reset(self, transfer_id: str, action: OpsAction, details: dict[str, str | int | None]) -> None:
        """Put a reset on the record that was done without it (the Temporal UI, or a note that timed out)."""
        await self._note(transfer_id, OpsNote(kind=OpsNoteKind.RESET, operator=action.operator, reason=action.reason,
                                              details=details))

    async def _note(self, transfer_id: str, note: OpsNote, run_id: str | None = None) -> None:
        handle = self.client.get_workflow_handle(transfer_id, run_id=run_id)
        try:
            await asyncio.wait_for(handle.execute_update("ops_note", note, result_type=OpsNote), NOTE_TIMEOUT)
        except WorkflowUpdateFailedError as err:
            raise OpsRefused(str(getattr(err.cause, "message", err.cause))) from err
        except TimeoutError as err:
            raise OpsRefused(f"the action on {transfer_id} is done, but no worker recorded it within "
                             f"{NOTE_TIMEOUT:.0f}s: it is in Temporal's history, not yet in the audit history") from err

    # --- bulk ----------------------------------------------------------------------------------------------

    async def plan_steps(self, verb: str, *, query: str | None = None) -> list[BulkItem]:
        """Every transfer whose step waits for an operator (narrowed by `query`), as `verb` (retry or skip) would
        meet it."""
        items = []
        for s in await self.stuck(query, slas={}):
            if not s.waits_for_operator:
                continue
            detail = f"'{s.step}' ({s.stage or '?'}, stuck since {s.since:%Y-%m-%d %H:%M}): {s.reason}"
            refused = (f"'{s.step}' is irreversible and cannot be skipped; retry it instead"
                       if verb == "skip" and s.irreversible else None)
            items.append(BulkItem(s.transfer_id, detail, refused, s))
        return items

    async def plan_resets(self, stage: Stage, transfer_ids: Iterable[str],
                          concurrency: int = DEFAULT_CONCURRENCY) -> list[BulkItem]:
        gate = asyncio.Semaphore(concurrency)

        async def plan(tid: str) -> BulkItem:
            try:
                found = await self.plan_reset(tid, stage)
            except (ResetRefused, NothingStuck) as err:
                return BulkItem(tid, f"reset to {stage.value}", str(err))
            return BulkItem(tid, found.describe(), None, found)

        return list(await asyncio.gather(*(self._bounded(gate, plan(t)) for t in transfer_ids)))

    async def transfers(self, query: str | None = None, *, stuck: bool = False) -> list[str]:
        """Transfer ids matching a visibility query, or the stuck ones (waiting for an operator or over SLA)."""
        if stuck:
            return [s.transfer_id for s in await self.stuck(query)]
        return sorted(await self._matching(query or "ExecutionStatus = 'Running'"))

    async def run_bulk(self, items: Iterable[BulkItem], act: Callable[[BulkItem], Awaitable[str]],
                       concurrency: int = DEFAULT_CONCURRENCY) -> list[BulkOutcome]:
        """Apply `act` to every item not refused by its plan, at most `concurrency` at a time."""
        gate = asyncio.Semaphore(concurrency)

        async def one(item: BulkItem) -> BulkOutcome:
            if item.refused:
                return BulkOutcome(item.transfer_id, False, item.refused, refused=True)
            try:
                return BulkOutcome(item.transfer_id, True, await act(item))
            except (OpsRefused, ResetRefused, NothingStuck) as err:
                return BulkOutcome(item.transfer_id, False, str(err), refused=True)
            except Exception as err:  # one transfer's trouble must not stop the others
                return BulkOutcome(item.transfer_id, False, f"{type(err).__name__}: {err}")

        return list(await asyncio.gather(*(self._bounded(gate, one(i)) for i in items)))

    # --- helpers -------------------------------------------------------------------------------------------

    async def _matching(self, query: str) -> set[str]:
        return {e.id async for e in self._list(f"{TRANSFERS} AND ({query})")}

    async def _list(self, query: str) -> Any:
        try:
            async for execution in self.client.list_workflows(query):
                yield execution
        except RPCError as err:
            if err.status == RPCStatusCode.INVALID_ARGUMENT:
                raise BadQuery(f"the visibility query is not valid: {err.message}") from err
            raise

    @staticmethod
    async def _bounded(gate: asyncio.Semaphore, work: Awaitable[T]) -> T:
        async with gate:
            return await work

    async def _rpc(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except RPCError as err:
            if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION,
                              RPCStatusCode.INVALID_ARGUMENT):
                raise OpsRefused(f"Temporal refused: {err.message}") from err
            raise

    async def _stuck_step(self, workflow_id: str) -> StuckStep | None:
        try:
            return await asyncio.wait_for(self.client.get_workflow_handle(workflow_id).query(
                "stuck_step", result_type=StuckStep), self.query_timeout)
        except (RPCError, WorkflowQueryFailedError, TimeoutError):
            return None  # no such workflow (a child not started yet), closed, or one without operable steps

    async def _status(self, transfer_id: str) -> TransferStatus | None:
        try:
            return await asyncio.wait_for(self.client.get_workflow_handle(transfer_id).query(
                "status", result_type=TransferStatus), self.query_timeout)
        except (RPCError, WorkflowQueryFailedError, TimeoutError):
            return None

    async def _shipment(self, transfer_id: str) -> ShipmentStatus | None:
        """The running shipment child's status; None when there is none running."""
        handle = self.client.get_workflow_handle(shipment_id(transfer_id))
        try:
            if (await handle.describe()).status is not WorkflowExecutionStatus.RUNNING:
                return None
            return await asyncio.wait_for(handle.query("status", result_type=ShipmentStatus), self.query_timeout)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return None
            raise

    async def _stage(self, transfer_id: str) -> str | None:
        try:
            described = await self.client.get_workflow_handle(transfer_id).describe()
        except RPCError:
            return None
        return described.typed_search_attributes.get(sa.TRANSFER_STAGE)


def _identity(action: OpsAction) -> str:
    return f"{action.operator} (tpt ops)"


def _activity_details(workflow_id: str, pending: PendingActivityInfo) -> dict[str, str | int | None]:
    return {"workflow_id": workflow_id, "activity_type": pending.activity_type.name,
            "activity_id": pending.activity_id, "attempt": pending.attempt}


def _sla_query(slas: dict[Stage, timedelta | None], now: datetime) -> str | None:
    """Running transfers that could be over their stage's SLA: in the stage, and started longer ago than it."""
    clauses = [f"({sa.TRANSFER_STAGE.name} = '{stage.value}' AND StartTime < "
               f"'{(now - sla).astimezone(UTC):%Y-%m-%dT%H:%M:%S.%fZ}')"
               for stage, sla in slas.items() if sla is not None]
    if not clauses:
        return None
    return f"{TRANSFERS} AND ExecutionStatus = 'Running' AND ({' OR '.join(clauses)})"
