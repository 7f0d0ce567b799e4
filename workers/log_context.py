"""Binds transfer, workflow, run, activity and attempt to every structlog line an activity writes."""

from __future__ import annotations

from typing import Any

import structlog
from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from tpt.ids import transfer_id_of


class _BindActivityContext(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        # Workflow ids derive from the transfer id (DESIGN.md §4): every line is found by the transfer's name.
        with structlog.contextvars.bound_contextvars(
            transfer_id=transfer_id_of(info.workflow_id) if info.workflow_id else None,
            workflow_id=info.workflow_id, run_id=info.workflow_run_id, activity=info.activity_type,
            attempt=info.attempt,
        ):
            return await super().execute_activity(input)


class LogContextInterceptor(Interceptor):
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _BindActivityContext(next)
