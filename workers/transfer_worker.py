"""The transfer worker: which workflows and activities run on the task queue, with their dependencies."""

from __future__ import annotations

from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

from activities.audit import AuditActivities
from activities.custody import CustodyActivities, EeumRegistry
from activities.notify import NotifyActivities, ScoNotifier
from activities.reference import load_reference_data
from activities.signers import SignerActivities
from tpt.audit.store import AuditStore
from tpt.settings import Settings
from tpt.signing import SignaturePolicy
from workers.bytecode import compile_workflow_modules
from workers.log_context import LogContextInterceptor
from workflows.backfill import BackfillWorkflow
from workflows.shipment import ShipmentWorkflow
from workflows.task_guard import UpdateGuardInterceptor
from workflows.transfer import TransferWorkflow

WORKFLOWS = [TransferWorkflow, ShipmentWorkflow, BackfillWorkflow]

# Workflow ids and run ids reach the log line as keys (structlog's ExtraAdder), not appended to the message.
workflow.logger.workflow_info_on_message = False


def build_worker(client: Client, store: AuditStore, task_queue: str, *, notifier: ScoNotifier | None = None,
                 eeum_registry: EeumRegistry | None = None, signature_policy: SignaturePolicy | None = None,
                 **options: object) -> Worker:
    """`signature_policy`: default from TPT_REQUIRE_SIGNATURES / TPT_REQUIRE_OPERATOR_SIGNATURES."""
    compile_workflow_modules()
    signers = SignerActivities(store.pool, signature_policy or Settings().signature_policy)
    audit, notify, custody = AuditActivities(store), NotifyActivities(notifier), CustodyActivities(eeum_registry)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=[audit.record_audit_event, load_reference_data, notify.notify_security_cooperation_offices,
                    custody.register_eeum_custody, signers.load_signer_registry],
        interceptors=[LogContextInterceptor(), UpdateGuardInterceptor()],
        **options,  # type: ignore[arg-type]
    )
