"""The SDK's typed errors, and the translation of Temporal's errors into them.

Callers catch these, not Temporal's: each says what went wrong and what to do next, and the `tpt` command maps
each class to one exit code.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from pydantic import ValidationError
from temporalio.client import RPCTimeoutOrCancelledError, WorkflowQueryFailedError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from tpt.contract import validation_problems

REFUSED_TYPE = "DecisionRefused"  # the ApplicationError type of workflows/refusal.py
BUSY_TYPE = "TransferBusy"  # workflows/task_guard.py: the transfer was moving on; the same decision may be sent again
START_HINT = "is the stack running? start it with `tpt dev`"
_OVER_SIZE = re.compile(r"size limit|larger than max|too large|exceeds", re.I)


class TransferError(Exception):
    """Base of every error the SDK raises on purpose."""


class TransferValidationError(TransferError):
    """Input that is wrong on its own: `problems` lists (field path, message) pairs, e.g. `items[0].serials`."""

    def __init__(self, problems: Sequence[tuple[str, str]]):
        self.problems = list(problems)
        super().__init__("\n".join(f"{path}: {message}" for path, message in self.problems))

    @classmethod
    def from_pydantic(cls, err: ValidationError, whole: str = "request") -> TransferValidationError:
        """`whole` names the input itself in a problem with no field path."""
        return cls(validation_problems(err, whole))

    @property
    def paths(self) -> list[str]:
        return [path for path, _ in self.problems]


class TransferConflict(TransferError):
    """The transfer id is taken by a different request: nothing was started."""

    def __init__(self, transfer_id: str, existing_digest: str, submitted_digest: str):
        self.transfer_id, self.existing_digest, self.submitted_digest = transfer_id, existing_digest, submitted_digest
        super().__init__(
            f"{transfer_id} was already submitted with a different request (digest {existing_digest[:12]}…, "
            f"yours {submitted_digest[:12]}…): use a new transfer id, or amend the existing transfer")


class TransferNotFound(TransferError):
    def __init__(self, transfer_id: str):
        self.transfer_id = transfer_id
        super().__init__(f"no transfer {transfer_id}: check the id (`tpt list` shows the transfers)")


class DecisionRefused(TransferError, WorkflowUpdateFailedError):
    """The workflow (or its validator) refused the decision; nothing was recorded. `reason` is the workflow's.

    Also a WorkflowUpdateFailedError whose `cause` is the refusing ApplicationError, so callers written against
    the raw Temporal error (catching it, reading `.cause`) keep working."""

    def __init__(self, transfer_id: str, reason: str, cause: ApplicationError | None = None):
        self.transfer_id, self.reason = transfer_id, reason
        self._refusal = cause or ApplicationError(reason, type=REFUSED_TYPE, non_retryable=True)
        Exception.__init__(self, f"{transfer_id}: refused: {reason}")

    @property
    def cause(self) -> BaseException:
        return self._refusal


class TransferBusy(DecisionRefused):
    """Refused only because the transfer was moving to its next step at that moment; the SDK sends it again."""


class TemporalUnreachable(TransferError):
    def __init__(self, address: str, detail: str, hint: str = START_HINT):
        self.address, self.detail = address, detail
        super().__init__(f"Temporal at {address} did not answer ({detail}): {hint}")


class WorkerUnavailable(TemporalUnreachable):
    """Temporal answered, but no worker did: queries and updates need a running worker."""

    def __init__(self, address: str, task_queue: str):
        self.address, self.detail, self.task_queue = address, "no worker answered", task_queue
        TransferError.__init__(self, f"no worker answered on task queue {task_queue} of Temporal at {address}: "
                                     "start one with `tpt dev` or `tpt worker` (with the same TPT_TASK_QUEUE)")


@contextmanager
def translated(workflow_id: str, address: str, task_queue: str) -> Iterator[None]:
    """Re-raise Temporal's errors for one workflow as the typed errors above."""
    try:
        yield
    except WorkflowUpdateFailedError as err:
        raise _refusal(workflow_id, err) from err
    except WorkflowQueryFailedError as err:  # e.g. the worker could not replay the workflow to answer
        raise TransferError(f"{workflow_id}: the worker failed to answer the status query: {err}") from err
    except RPCTimeoutOrCancelledError as err:
        raise WorkerUnavailable(address, task_queue) from err
    except RPCError as err:
        raise _rpc_error(workflow_id, address, task_queue, err) from err


def _refusal(workflow_id: str, err: WorkflowUpdateFailedError) -> TransferError:
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.type == REFUSED_TYPE:
        return DecisionRefused(workflow_id, cause.message, cause)
    if isinstance(cause, ApplicationError) and cause.type == BUSY_TYPE:
        return TransferBusy(workflow_id, cause.message, cause)
    return TransferError(f"{workflow_id}: the decision failed in the workflow: {cause}")


def _rpc_error(workflow_id: str, address: str, task_queue: str, err: RPCError) -> TransferError:
    if err.status is RPCStatusCode.NOT_FOUND and "already completed" in err.message:
        return DecisionRefused(workflow_id, "it has already ended and accepts no more decisions")
    if err.status is RPCStatusCode.NOT_FOUND:
        return TransferNotFound(workflow_id)
    if err.status is RPCStatusCode.UNAVAILABLE:
        return TemporalUnreachable(address, err.message)
    if _OVER_SIZE.search(err.message):
        return TransferError(f"{workflow_id}: Temporal refused the call: it is over Temporal's size limit "
                             f"({err.message}); shorten the request or decision, or split the transfer")
    if err.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
        return WorkerUnavailable(address, task_queue)  # our own timeout: the server waited for a worker
    return TransferError(f"{workflow_id}: Temporal refused the call: {err.message} ({err.status.name})")
