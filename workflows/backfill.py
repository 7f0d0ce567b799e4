"""Backfill: replenishing the donor's stockpile (a child workflow that may wait for years).

Mechanism, letter of request, letter of offer and acceptance, then partial deliveries until the transferred
quantity is replaced. Reminders while nothing moves; continue-as-new keeps the history short.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from tpt.messages import BackfillInput, BackfillRecord, BackfillStatus, BackfillStep
    from tpt.stages import Stage
    from workflows.audit_trail import AuditTrail
    from workflows.refusal import refuse

# Each step may come only after the ones before it.
_ORDER = [BackfillStep.MECHANISM, BackfillStep.LETTER_OF_REQUEST, BackfillStep.LETTER_OF_OFFER, BackfillStep.DELIVERY]


@workflow.defn(name="BackfillWorkflow")
class BackfillWorkflow:
    @workflow.init
    def __init__(self, input: BackfillInput) -> None:
        self.input = input
        self.state = input.carried or BackfillStatus(required=input.quantity_required)
        self.trail = AuditTrail(input.transfer_id, input.audit_ordinals, scope="backfill")
        self.progress = 0  # records since the last reminder

    @workflow.run
    async def run(self, input: BackfillInput) -> BackfillStatus:
        while self.state.replaced < self.state.required:
            if self._should_continue_as_new():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(input.model_copy(update={
                    "carried": self.status().model_copy(update={"runs": self.state.runs + 1}),
                    "audit_ordinals": self.trail.ordinals,
                }))
            seen = self.progress
            try:
                await workflow.wait_condition(
                    lambda: self.progress != seen or self.state.replaced >= self.state.required,  # noqa: B023
                    timeout=input.reminder, timeout_summary="backfill reminder",
                )
            except TimeoutError:
                await self._record("BACKFILL_REMINDER", "tpt-engine", "system", {"awaiting": self._awaiting()})
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.status()

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() > self.input.history_limit

    @workflow.update
    async def record_backfill(self, record: BackfillRecord) -> BackfillStatus:
        self.state = self._applied(record)
        self.progress += 1
        await self._record("BACKFILL_RECORDED", record.reporter, "backfill",
                           record.model_dump(mode="json") | {"replaced": self.state.replaced})
        return self.status()

    @record_backfill.validator
    def _validate(self, record: BackfillRecord) -> None:
        missing = [step.value for step in _ORDER[: _ORDER.index(record.step)] if not self._done(step)]
        if missing:
            raise refuse(f"{record.step.value} before {', '.join(missing)}; record those first")
        if record.step is not BackfillStep.DELIVERY and self._done(record.step):
            raise refuse(f"{record.step.value} is already recorded")
        if record.step is BackfillStep.MECHANISM and record.mechanism is None:
            raise refuse("MECHANISM needs `mechanism` (FMS_CASE, DCS_PURCHASE, FMF_FUNDED or NATO_FUNDED)")
        if record.step is BackfillStep.DELIVERY:
            self._check_delivery(record.quantity)
        elif not record.reference and record.step is not BackfillStep.MECHANISM:
            raise refuse(f"{record.step.value} needs the document's `reference`")

    def _check_delivery(self, quantity: int) -> None:
        outstanding = self.state.required - self.state.replaced
        if quantity <= 0:
            raise refuse("a DELIVERY needs a positive `quantity`")
        if quantity > outstanding:
            raise refuse(f"delivery of {quantity} exceeds the {outstanding} still to replace")

    def _done(self, step: BackfillStep) -> bool:
        return {
            BackfillStep.MECHANISM: self.state.mechanism is not None,
            BackfillStep.LETTER_OF_REQUEST: self.state.letter_of_request is not None,
            BackfillStep.LETTER_OF_OFFER: self.state.letter_of_offer is not None,
            BackfillStep.DELIVERY: self.state.replaced > 0,
        }[step]

    def _applied(self, record: BackfillRecord) -> BackfillStatus:
        change: dict[str, object] = {"records": self.state.records + 1}
        if record.step is BackfillStep.MECHANISM:
            change["mechanism"] = record.mechanism
        elif record.step is BackfillStep.LETTER_OF_REQUEST:
            change["letter_of_request"] = record.reference
        elif record.step is BackfillStep.LETTER_OF_OFFER:
            change["letter_of_offer"] = record.reference
        else:
            change["replaced"] = self.state.replaced + record.quantity
        return self.state.model_copy(update=change)

    def _awaiting(self) -> str:
        pending = next((s for s in _ORDER if not self._done(s)), BackfillStep.DELIVERY)
        if pending is BackfillStep.DELIVERY:
            return f"deliveries: {self.state.required - self.state.replaced} of {self.state.required} to replace"
        return pending.value

    @workflow.query
    def status(self) -> BackfillStatus:
        carried = self.input.carried.audit_events if self.input.carried else 0
        return self.state.model_copy(update={"audit_events": carried + self.trail.count})

    async def _record(self, event_type: str, actor: str, role: str, payload: dict[str, object]) -> None:
        await self.trail.record(event_type, Stage.BACKFILL, actor, role, payload,
                                request_digest=self.input.request_digest, policy_version=self.input.policy_version)
