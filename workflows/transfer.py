"""The transfer workflow: the stage machine of DESIGN.md §2, advanced by validated updates.

Deterministic orchestration only: every side effect (the audit append) is an activity.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.audit import AUDIT_CONFLICT, AuditActivities
    from tpt import search_attributes as sa
    from tpt.audit.events import NewAuditEvent, event_id
    from tpt.contract import TransferRequest
    from tpt.messages import (
        BackfillDelivery,
        Handover,
        Signature,
        SignOff,
        TransferStatus,
        UsDecision,
        UsOutcome,
        Withdrawal,
    )
    from tpt.stages import Stage

# Audit appends never give up: a Postgres outage makes the transfer wait, never lose an event.
AUDIT_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    maximum_interval=timedelta(seconds=10),
    non_retryable_error_types=[AUDIT_CONFLICT],
)


REFUSED = "DecisionRefused"


def refuse(reason: str) -> ApplicationError:
    """A refusal the sender sees as the update's failure; in a validator nothing is written to history."""
    return ApplicationError(reason, type=REFUSED, non_retryable=True)


def initial_search_attributes(request: TransferRequest) -> TypedSearchAttributes:
    return TypedSearchAttributes([
        SearchAttributePair(sa.TRANSFER_STAGE, Stage.REQUESTED.value),
        SearchAttributePair(sa.DONOR_NATION, request.donor),
        SearchAttributePair(sa.RECIPIENT, request.recipient),
        SearchAttributePair(sa.USML_CATEGORIES, list(request.usml_categories)),
        SearchAttributePair(sa.TOTAL_VALUE_USD, float(request.total_value_usd)),
        SearchAttributePair(sa.PRIORITY, request.priority.value),
        SearchAttributePair(sa.NEEDS_ATTENTION, False),
    ])


@workflow.defn(name="TransferWorkflow")
class TransferWorkflow:
    @workflow.init
    def __init__(self, request: TransferRequest) -> None:
        self.request = request
        self.digest = request.digest()
        self.stage = Stage.REQUESTED
        self.stage_entered_at = workflow.now()
        self.signatures: list[Signature] = []
        self.us_outcome: UsOutcome | None = None
        self.handovers: list[Handover] = []
        self.backfill_delivered = 0
        self.withdrawn_by: Withdrawal | None = None
        self.audit_ordinals: dict[str, int] = {}
        self.audit_count = 0
        self.audit_lock = asyncio.Lock()

    @workflow.run
    async def run(self, request: TransferRequest) -> TransferStatus:
        await self._record("TRANSFER_REQUESTED", request.requested_by, "requester", self._summary())
        stages: list[tuple[Stage, Callable[[], bool]]] = [
            (Stage.ALLY_SIGNOFF, lambda: any(s.approve for s in self.signatures)),
            (Stage.US_REVIEW, lambda: self.us_outcome is not None),
            (Stage.SHIPMENT, lambda: any(h.delivered for h in self.handovers)),
            (Stage.BACKFILL, lambda: self.backfill_delivered >= self.backfill_required),
        ]
        for stage, done in stages:
            await self._enter(stage)
            await workflow.wait_condition(lambda: done() or self.withdrawn_by is not None)  # noqa: B023
            if self.withdrawn_by is not None:
                await self._enter(Stage.WITHDRAWN, self.withdrawn_by.actor, "requester")
                break
        else:
            await self._enter(Stage.COMPLETED)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.status()

    # --- updates -------------------------------------------------------------------------------------

    @workflow.update
    async def sign_off(self, decision: SignOff) -> TransferStatus:
        # A sign-off sent right after submission may arrive while the request itself is being recorded.
        await workflow.wait_condition(lambda: self.stage != Stage.REQUESTED)
        self._require_stage(Stage.ALLY_SIGNOFF, "sign-off")
        self.signatures.append(Signature(**decision.model_dump(exclude={"comment"}), at=workflow.now()))
        await self._record("SIGN_OFF", decision.signer, decision.role, decision.model_dump(mode="json"))
        return self.status()

    @sign_off.validator
    def _validate_sign_off(self, decision: SignOff) -> None:
        self._require_stage(Stage.ALLY_SIGNOFF, "sign-off", also=Stage.REQUESTED)
        if decision.nation != self.request.donor:
            raise refuse(f"signer nation {decision.nation} is not the donor {self.request.donor}")

    @workflow.update
    async def us_decision(self, decision: UsDecision) -> TransferStatus:
        self.us_outcome = decision.outcome
        await self._record("US_DECISION", decision.reviewer, decision.office, decision.model_dump(mode="json"))
        return self.status()

    @us_decision.validator
    def _validate_us_decision(self, decision: UsDecision) -> None:
        self._require_stage(Stage.US_REVIEW, "U.S. decision")

    @workflow.update
    async def record_handover(self, handover: Handover) -> TransferStatus:
        self.handovers.append(handover)
        await self._record("HANDOVER", handover.from_party, "custodian", handover.model_dump(mode="json"))
        return self.status()

    @record_handover.validator
    def _validate_handover(self, handover: Handover) -> None:
        self._require_stage(Stage.SHIPMENT, "handover")

    @workflow.update
    async def record_backfill(self, delivery: BackfillDelivery) -> TransferStatus:
        self.backfill_delivered += delivery.quantity
        await self._record("BACKFILL_DELIVERY", delivery.reporter, "backfill", delivery.model_dump(mode="json"))
        return self.status()

    @record_backfill.validator
    def _validate_backfill(self, delivery: BackfillDelivery) -> None:
        self._require_stage(Stage.BACKFILL, "backfill delivery")

    @workflow.update
    async def withdraw(self, withdrawal: Withdrawal) -> TransferStatus:
        self.withdrawn_by = withdrawal
        await self._record("WITHDRAWAL_REQUESTED", withdrawal.actor, "requester", withdrawal.model_dump(mode="json"))
        return self.status()

    @withdraw.validator
    def _validate_withdraw(self, withdrawal: Withdrawal) -> None:
        if self.stage.is_terminal:
            raise refuse(f"transfer is already {self.stage.value}")
        if any(h.leg for h in self.handovers):
            raise refuse("a shipment leg has left: shipment is irreversible, withdrawal refused")

    @workflow.query
    def status(self) -> TransferStatus:
        return TransferStatus(
            transfer_id=self.request.transfer_id, stage=self.stage, stage_entered_at=self.stage_entered_at,
            donor=self.request.donor, recipient=self.request.recipient, signatures=list(self.signatures),
            awaiting=self._awaiting(), us_decision=self.us_outcome, handovers=list(self.handovers),
            backfill_delivered=self.backfill_delivered, backfill_required=self.backfill_required,
            request_digest=self.digest, audit_events=self.audit_count,
        )

    # --- internals -----------------------------------------------------------------------------------

    @property
    def backfill_required(self) -> int:
        return sum(item.quantity for item in self.request.items)

    def _require_stage(self, stage: Stage, what: str, also: Stage | None = None) -> None:
        if self.stage not in (stage, also):
            raise refuse(f"{what} is accepted only in {stage.value}; transfer is in {self.stage.value}")

    def _awaiting(self) -> list[str]:
        return {
            Stage.ALLY_SIGNOFF: [f"sign-off by {self.request.donor}"],
            Stage.US_REVIEW: ["U.S. re-export consent decision"],
            Stage.SHIPMENT: ["delivery handover"],
            Stage.BACKFILL: [f"backfill of {self.backfill_required - self.backfill_delivered} units"],
        }.get(self.stage, [])

    def _summary(self) -> dict[str, object]:
        r = self.request
        return {"donor": r.donor, "recipient": r.recipient, "total_value_usd": str(r.total_value_usd),
                "priority": r.priority.value, "items": len(r.items)}

    async def _enter(self, stage: Stage, actor: str = "tpt-engine", role: str = "system") -> None:
        previous, self.stage, self.stage_entered_at = self.stage, stage, workflow.now()
        workflow.upsert_search_attributes([sa.TRANSFER_STAGE.value_set(stage.value)])
        await self._record("STAGE_ENTERED", actor, role, {"from": previous.value, "to": stage.value})

    async def _record(self, event_type: str, actor: str, role: str, payload: dict[str, object]) -> None:
        ordinal = self.audit_ordinals.get(event_type, 0) + 1
        self.audit_ordinals[event_type] = ordinal
        event = NewAuditEvent(
            event_id=event_id(self.request.transfer_id, event_type, ordinal),
            transfer_id=self.request.transfer_id, event_type=event_type, stage=self.stage, actor=actor,
            role=role, workflow_time=workflow.now(), request_digest=self.digest, payload=payload,
        )
        # One append at a time, so the chain's order is the order the workflow decided in.
        async with self.audit_lock:
            await workflow.execute_local_activity_method(
                AuditActivities.record_audit_event, event,
                start_to_close_timeout=timedelta(seconds=15), retry_policy=AUDIT_RETRY,
            )
        self.audit_count += 1
