"""How a workflow refuses a decision: the sender sees the reason; from a validator nothing reaches history."""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

REFUSED = "DecisionRefused"


def refuse(reason: str) -> ApplicationError:
    return ApplicationError(reason, type=REFUSED, non_retryable=True)
