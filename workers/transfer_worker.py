"""The transfer worker: which workflows and activities run on the task queue, with their dependencies."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.worker import Worker

from activities.audit import AuditActivities
from tpt.audit.store import AuditStore
from workers.log_context import LogContextInterceptor
from workflows.transfer import TransferWorkflow

WORKFLOWS = [TransferWorkflow]


def build_worker(client: Client, store: AuditStore, task_queue: str) -> Worker:
    audit = AuditActivities(store)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=[audit.record_audit_event],
        interceptors=[LogContextInterceptor()],
    )
