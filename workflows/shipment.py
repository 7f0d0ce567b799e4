"""Shipment: custody legs from the donor's depot through the hub to the receiving unit (a child workflow).

Each handover is an update sent by the party handing over; EEUM serials are checked against the request.
Irreversible once a leg has left: the parent is told at the first handover, and each leg that left with EEUM
articles is registered with the EEUM registry by an irreversible step (retried, never skipped).
"""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.custody import CustodyActivities, CustodyNotice
    from activities.notify import DeliveryNotice, NotifyActivities
    from tpt.messages import Handover, ShipmentInput, ShipmentStatus
    from tpt.signing import DecisionContext
    from tpt.stages import Stage
    from workflows.audit_trail import AuditTrail
    from workflows.operations import Operable, retry_policy
    from workflows.refusal import refuse
    from workflows.signatures import SignedDecisions

DEFAULT_LEGS = ["depot-to-hub", "hub-to-border", "border-to-unit"]
LEG_DEPARTED_SIGNAL = "shipment_departed"
# Shipments started before this patch replay without the custody registration step.
EEUM_CUSTODY_STEP = "shipment-eeum-custody-step"


@workflow.defn(name="ShipmentWorkflow")
class ShipmentWorkflow(Operable, SignedDecisions):
    @workflow.init
    def __init__(self, input: ShipmentInput) -> None:
        self.input = input
        self.handovers: list[Handover] = []
        self.departures: list[datetime] = []  # when each handover was recorded
        self.custodian = input.first_custodian
        self.trail = AuditTrail(input.transfer_id, scope="shipment")
        self.signers = input.signers  # the parent's signer registry: who may retry or skip a step here
        # Decided here, once, like the audit patch: never from a coroutine that might meet it first elsewhere.
        self.registers_custody = workflow.patched(EEUM_CUSTODY_STEP)

    @workflow.run
    async def run(self, input: ShipmentInput) -> ShipmentStatus:
        if self.registers_custody and input.eeum_serials:
            for leg in range(len(input.legs)):
                await workflow.wait_condition(lambda leg=leg: len(self.handovers) > leg)  # type: ignore[misc]
                await self._register_custody(leg)
        await workflow.wait_condition(lambda: len(self.handovers) == len(input.legs))
        await workflow.wait_condition(workflow.all_handlers_finished)
        delivered_at = workflow.now()
        await self._record("SHIPMENT_DELIVERED", "tpt-engine", "system", {"custodian": self.custodian})
        notice = DeliveryNotice(transfer_id=input.transfer_id, donor=input.donor, recipient=input.recipient,
                                delivered_at=delivered_at.isoformat(), eeum_serials=input.eeum_serials,
                                eeum_inventory_due=None)
        references = await self.run_step("notify security cooperation offices", lambda: self._notify(notice))
        if references is not None:
            await self._record("SCO_NOTIFIED", "tpt-engine", "system", {"references": references})
        return self.status().model_copy(update={"delivered_at": delivered_at})

    async def _notify(self, notice: DeliveryNotice) -> list[str]:
        return await workflow.execute_activity_method(
            NotifyActivities.notify_security_cooperation_offices, notice,
            start_to_close_timeout=self.input.step_retry.timeout, retry_policy=retry_policy(self.input.step_retry),
            summary=f"notify SCO-{notice.donor} and SCO-{notice.recipient} of delivery",
        )

    async def _register_custody(self, leg: int) -> None:
        """The leg has left: register who holds the EEUM serials now. Irreversible: retry, never skip."""
        handover = self.handovers[leg]
        notice = CustodyNotice(transfer_id=self.input.transfer_id, leg=handover.leg, from_party=handover.from_party,
                               to_party=handover.to_party, serials=handover.serials,
                               departed_at=self.departures[leg].isoformat())
        await self.run_step(
            f"register custody of leg '{handover.leg}' with the EEUM registry",
            lambda: workflow.execute_activity_method(
                CustodyActivities.register_eeum_custody, notice,
                start_to_close_timeout=self.input.step_retry.timeout, retry_policy=retry_policy(self.input.step_retry),
                summary=f"register custody of {len(notice.serials)} EEUM serials: {notice.to_party}",
            ),
            irreversible=True,
        )

    @workflow.update
    async def record_handover(self, handover: Handover) -> ShipmentStatus:
        first = not self.handovers
        self.handovers.append(handover)
        self.departures.append(workflow.now())
        self.custodian = handover.to_party
        await self._record("HANDOVER", handover.from_party, "custodian", handover.model_dump(mode="json"))
        if first:
            parent = workflow.info().parent
            if parent is not None:
                await workflow.get_external_workflow_handle(parent.workflow_id).signal(LEG_DEPARTED_SIGNAL)
        return self.status()

    @record_handover.validator
    def _validate_handover(self, handover: Handover) -> None:
        expected = self.status().next_leg
        if expected is None:
            raise refuse("every leg is already handed over; the shipment is delivered")
        if handover.leg != expected:
            raise refuse(f"next leg is '{expected}', not '{handover.leg}'; legs in order: {self.input.legs}")
        if handover.from_party != self.custodian:
            raise refuse(f"only the current custodian '{self.custodian}' can hand over; "
                         f"'{handover.from_party}' does not hold the articles")
        self._check_serials(handover.serials)

    def _check_serials(self, serials: list[str]) -> None:
        expected, given = set(self.input.eeum_serials), set(serials)
        if expected == given and len(serials) == len(given):
            return
        missing, unexpected = sorted(expected - given), sorted(given - expected)
        raise refuse(f"EEUM serials do not match the request: missing {missing or 'none'}, "
                     f"not in the request {unexpected or 'none'}; count the articles again")

    def _signing_context(self, stage: str | None = None, subject: str = "") -> DecisionContext:
        return DecisionContext(self.input.transfer_id, self.input.request_digest, stage or Stage.SHIPMENT.value,
                               subject)

    @workflow.query
    def status(self) -> ShipmentStatus:
        return ShipmentStatus(legs=self.input.legs, handovers=list(self.handovers), custodian=self.custodian,
                              audit_events=self.trail.count)

    async def _record(self, event_type: str, actor: str, role: str, payload: dict[str, object]) -> None:
        await self.trail.record(event_type, Stage.SHIPMENT, actor, role, payload,
                                request_digest=self.input.request_digest, policy_version=self.input.policy_version)
