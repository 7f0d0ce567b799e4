"""Refuse a decision that would land, in one workflow task, after the workflow itself has moved on.

Why: a worker that takes a transfer over cold can be handed the wakeup of the run coroutine (a child finished, an
activity or timer completed) and a decision in one workflow task, yet run them in two activations: the coroutine
first, the update after. Its history then holds the coroutine's commands before the update's acceptance. Replaying
that task, the SDK runs the update first, the commands no longer match, and the transfer stops answering for good
("Update machine does not handle this event", temporalio/sdk-python#1591; seen in tests/reliability).

The guard: the run coroutine notes the workflow task in which it issued a command; an update validated later in that
same task is refused as busy (nothing reaches history, so replay is untouched) and the SDK sends it again, when it
lands in a task of its own. Validators do not run on replay, so the guard never changes how a history replays.
The SDK calls this only for updates that have a validator: every update of ours has one.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    HandleUpdateInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

BUSY = "TransferBusy"  # the ApplicationError type the SDK retries
_MARK = "_tpt_run_coroutine_task"  # attribute on the workflow instance: history length of the task it last acted in


def note_run_coroutine_command() -> None:
    """Call where workflow code issues a command; only the run coroutine (no update handler) leaves a mark."""
    if workflow.current_update_info() is None:
        setattr(workflow.instance(), _MARK, workflow.info().get_current_history_length())


def moved_on_in_this_task() -> bool:
    """The run coroutine issued a command while this workflow task's events were being applied. The activation
    that applied them may report a history length one short of the task's (the task's scheduled event rather than
    its started event, as seen in tests/reliability); a command of any earlier task lies at least three events back
    (that task's started, completed and this task's scheduled events)."""
    mark = getattr(workflow.instance(), _MARK, None)
    return mark is not None and mark >= workflow.info().get_current_history_length() - 1


class _GuardUpdates(WorkflowInboundInterceptor):
    def handle_update_validator(self, input: HandleUpdateInput) -> None:
        if moved_on_in_this_task():
            raise ApplicationError(
                f"{workflow.info().workflow_id} moved to its next step in this very moment; send '{input.update}' "
                "again (the SDK does so by itself)", type=BUSY, non_retryable=True)
        self.next.handle_update_validator(input)


class UpdateGuardInterceptor(Interceptor):
    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor]:
        return _GuardUpdates
