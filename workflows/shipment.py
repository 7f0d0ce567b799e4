"""Shipment: custody legs from the donor's depot through the hub to the receiving unit (a child workflow).

Each handover is an update sent by the party handing over; EEUM serials are checked against the request.
Irreversible once a leg has left: the parent is told at the first handover.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.notify import DeliveryNotice, NotifyActivities
    from tpt.messages import Handover, ShipmentInput, ShipmentStatus
    from tpt.stages import Stage
    from workflows.audit_trail import AuditTrail
    from workflows.operations import Operable, retry_policy
    from workflows.refusal import refuse

DEFAULT_LEGS = ["depot-to-hub", "hub-to-border", "border-to-unit"]
LEG_DEPARTED_SIGNAL = "shipment_departed"


@workflow.defn(name="ShipmentWorkflow")
class ShipmentWorkflow(Operable):
    @workflow.init
    def __init__(self, input: ShipmentInput) -> None:
        self.input = input
        self.handovers: list[Handover] = []
        self.custodian = input.first_custodian
        self.trail = AuditTrail(input.transfer_id)

    @workflow.run
    async def run(self, input: ShipmentInput) -> ShipmentStatus:
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

    @workflow.update
    async def record_handover(self, handover: Handover) -> ShipmentStatus:
        first = not self.handovers
        self.handovers.append(handover)
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

    @workflow.query
    def status(self) -> ShipmentStatus:
        return ShipmentStatus(legs=self.input.legs, handovers=list(self.handovers), custodian=self.custodian,
                              audit_events=self.trail.count)

    async def _record(self, event_type: str, actor: str, role: str, payload: dict[str, object]) -> None:
        await self.trail.record(event_type, Stage.SHIPMENT, actor, role, payload,
                                request_digest=self.input.request_digest, policy_version=self.input.policy_version)
