"""Steps that can get stuck, and the operator's way out (DESIGN.md §3 "Ops").

A side-effect step whose bounded retries run out does not fail the transfer: the workflow flags
NeedsAttention with the reason and waits for an operator's `ops_retry`, or `ops_skip` (with a reason; refused for
irreversible steps). Every flag, retry and skip is in the audit history with the operator's identity.

What an operator does through Temporal itself (pausing, unpausing or resetting an activity; resetting the workflow to
a stage) the workflow cannot see: `tpt ops` tells it afterwards with an `ops_note` update, which puts the action, the
operator and the reason on the record.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError

with workflow.unsafe.imports_passed_through():
    from tpt import search_attributes as sa
    from tpt import telemetry
    from tpt.messages import OpsAction, StepRetry, StuckStep
    from tpt.ops.messages import OpsNote, OpsNoteKind
    from workflows.audit_trail import AuditTrail
    from workflows.refusal import refuse
    from workflows.signatures import check_operator, operator_signature

T = TypeVar("T")
ENGINE = "tpt-engine"


def retry_policy(config: StepRetry) -> RetryPolicy:
    return RetryPolicy(initial_interval=config.first_backoff, maximum_interval=config.max_backoff,
                       maximum_attempts=config.attempts)


def failure_reason(step: str, err: ActivityError) -> str:
    cause = err.cause
    if isinstance(cause, TimeoutError):
        kind = cause.type.name.lower().replace("_", "-") if cause.type else "timeout"
        return f"{step} timed out ({kind}) on every attempt"
    message = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
    return f"{step} failed after its retries: {message}"


class Operable:
    """Mixin for workflows with operable steps; the class provides `_record(event_type, actor, role, payload)`."""

    stuck: StuckStep | None = None
    _ops_decision: tuple[str, OpsAction] | None = None
    trail: AuditTrail
    _reset_on_record: int | None = None  # the reset (its branch) whose OPS_RESET this run has recorded

    async def _record(self, event_type: str, actor: str, role: str, payload: dict[str, Any]) -> None:
        raise NotImplementedError

    async def run_step(self, step: str, call: Callable[[], Awaitable[T]], *, irreversible: bool = False) -> T | None:
        """Run a step; when its retries are exhausted, wait for an operator. None when the operator skipped it."""
        while True:
            try:
                return await call()
            except ActivityError as err:
                self.stuck = StuckStep(step=step, reason=failure_reason(step, err), irreversible=irreversible,
                                       since=workflow.now())
            await self._flag(self.stuck.reason)
            await workflow.wait_condition(lambda: self._ops_decision is not None)
            assert self._ops_decision is not None
            (kind, _), self._ops_decision, self.stuck = self._ops_decision, None, None
            await self._clear_flag()
            if kind == "skip":
                return None

    @workflow.update
    async def ops_retry(self, action: OpsAction) -> StuckStep:
        stuck = self._stuck_or_refuse()
        await self._record("OPS_RETRY", action.operator, "operator", {"step": stuck.step, "reason": action.reason,
                                                                      **operator_signature(self, action)})
        self._ops_decision = ("retry", action)
        return stuck

    @ops_retry.validator
    def _validate_ops_retry(self, action: OpsAction) -> None:
        check_operator(self, action, "ops_retry", self._stuck_or_refuse())

    @workflow.update
    async def ops_skip(self, action: OpsAction) -> StuckStep:
        stuck = self._stuck_or_refuse()
        await self._record("OPS_SKIP", action.operator, "operator", {"step": stuck.step, "reason": action.reason,
                                                                     **operator_signature(self, action)})
        self._ops_decision = ("skip", action)
        return stuck

    @ops_skip.validator
    def _validate_ops_skip(self, action: OpsAction) -> None:
        stuck = self._stuck_or_refuse()
        if stuck.irreversible:
            raise refuse(f"{stuck.step} is irreversible and cannot be skipped; fix the cause and retry it")
        check_operator(self, action, "ops_skip", stuck)

    @workflow.update
    async def ops_note(self, note: OpsNote) -> OpsNote:
        self._check_note(note)  # again: notes delivered together were all validated before any was recorded
        payload: dict[str, Any] = {"reason": note.reason, **note.details}
        if note.kind is OpsNoteKind.RESET:
            self._reset_on_record = self.trail.branch
            # The run the reset created decides from here on: its flag (not the replaced run's) is current.
            payload |= {"run_id": workflow.info().run_id, "needs_attention": self.attention is not None,
                        "blocked_reason": self.attention}
        await self._record(f"OPS_{note.kind.value}", note.operator, "operator", payload)
        return note

    @ops_note.validator
    def _validate_ops_note(self, note: OpsNote) -> None:
        self._check_note(note)

    def _check_note(self, note: OpsNote) -> None:
        if note.kind is not OpsNoteKind.RESET:
            return
        if self.trail.branch is None:
            raise refuse("this run was not created by a reset; there is no reset to record")
        if self._reset_on_record == self.trail.branch:
            raise refuse("the reset that created this run is already on the record")

    @workflow.query
    def stuck_step(self) -> StuckStep | None:
        return self.stuck

    @workflow.query
    def reset_on_record(self) -> bool | None:
        """None: this run was not created by a reset; otherwise whether that reset is in the audit history."""
        return None if self.trail.branch is None else self._reset_on_record == self.trail.branch

    def _stuck_or_refuse(self) -> StuckStep:
        if self.stuck is None or self._ops_decision is not None:
            raise refuse("no step is waiting for an operator here")
        return self.stuck

    async def _flag(self, reason: str) -> None:
        self.attention = reason
        workflow.metric_meter().create_counter(telemetry.ATTENTION_RAISED, "steps flagged for an operator").add(1)
        workflow.upsert_search_attributes([sa.NEEDS_ATTENTION.value_set(True), sa.BLOCKED_REASON.value_set(reason)])
        await self._record("NEEDS_ATTENTION", ENGINE, "system", {"needs_attention": True, "blocked_reason": reason})

    async def _clear_flag(self) -> None:
        self.attention = None
        workflow.metric_meter().create_counter(telemetry.ATTENTION_CLEARED, "attention flags cleared").add(1)
        workflow.upsert_search_attributes([sa.NEEDS_ATTENTION.value_set(False), sa.BLOCKED_REASON.value_unset()])
        await self._record("ATTENTION_CLEARED", ENGINE, "system", {"needs_attention": False, "blocked_reason": None})

    attention: str | None = None
