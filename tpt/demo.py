"""The demo transfer `make run` shows, and the simulated parties that drive any transfer to its end.

Each party acts only when the transfer waits for it, exactly as a person would through the SDK.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from temporalio.client import Client

from tpt import registry
from tpt.client import TransferClient
from tpt.contract import TransferRequest
from tpt.messages import (
    BackfillMechanism,
    BackfillRecord,
    BackfillStep,
    EeumInventory,
    EmergencyWaiver,
    Handover,
    SignOff,
    TransferStatus,
    UsDecision,
    UsOutcome,
)
from tpt.settings import Settings
from tpt.stages import Stage

Say = Callable[[str], None]


def demo_request(now: datetime | None = None) -> TransferRequest:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return TransferRequest.model_validate({
        "transfer_id": f"TPT-DEMO-{stamp}",
        "donor": "LT",
        "recipient": "UA",
        "end_user": "Armed Forces of Ukraine",
        "end_use": "Air and anti-armour defence of national territory",
        "kind": "PERMANENT",
        "priority": "URGENT",
        "origin": "FMS",
        "fms_case": "LT-B-UAA",
        "requested_by": "lt.mod.requester",
        "items": [{
            "nsn": "1410-01-468-6488",
            "nomenclature": "Javelin missile, FGM-148",
            "usml_category": "IV",
            "quantity": 4,
            "unit_value_usd": "178000",
            "sme": True,
            "mde": False,
            "eeum": True,
            "serials": ["JAV-1001", "JAV-1002", "JAV-1003", "JAV-1004"],
        }],
    })


class SimulatedParties:
    """Donor signers, U.S. reviewer and officials, custodians, backfill office and EEUM inspector."""

    def __init__(self, client: TransferClient, request: TransferRequest, say: Say = print):
        self.client, self.request, self.say = client, request, say
        self.registry = registry.for_donor(request.donor)

    async def act(self, status: TransferStatus) -> bool:
        """Take the step the transfer waits for; False when nothing is for us to do (yet)."""
        step = {
            Stage.ALLY_SIGNOFF: self._sign,
            Stage.US_REVIEW: self._review,
            Stage.CONGRESSIONAL_REVIEW: self._waive,
            Stage.SHIPMENT: self._hand_over,
            Stage.BACKFILL: self._backfill,
        }.get(status.stage)
        return await step(status) if step else False

    async def _sign(self, status: TransferStatus) -> bool:
        signed = {s.role for s in status.signatures}
        if len(signed) >= status.quorum:  # quorum met: the transfer is about to move on
            return False
        role, people = next((r, p) for r, p in self.registry.signoff.seats.items() if r not in signed)
        await self.client.sign_off(self.request.transfer_id, SignOff(
            signer=people[0], nation=self.request.donor, role=role, approve=True,
            request_digest=status.request_digest))
        self.say(f"  {role} sign-off by {people[0]}")
        return True

    async def _review(self, status: TransferStatus) -> bool:
        if status.us_decision is not None or status.policy is None or status.policy.fast_track:
            return False  # decided, or consented by framework: the transfer is about to move on
        office = status.policy.route.value
        await self.client.us_decision(self.request.transfer_id, UsDecision(
            reviewer=self.registry.reviewers[office][0], office=office, outcome=UsOutcome.APPROVE,
            request_digest=status.request_digest))
        self.say(f"  U.S. consent by {office}")
        return True

    async def _waive(self, status: TransferStatus) -> bool:
        if status.congressional_review != "RUNNING":
            return False
        await self.client.emergency_waiver(self.request.transfer_id, EmergencyWaiver(
            official=self.registry.waiver_officials[0],
            justification="Emergency: imminent threat to Ukrainian air defence; the demo cannot wait 30 days."))
        self.say("  emergency waiver of the congressional review period")
        return True

    async def _hand_over(self, status: TransferStatus) -> bool:
        from tpt.ids import shipment_id

        try:
            shipment = await self.client.client.get_workflow_handle(shipment_id(self.request.transfer_id)).query(
                "status")
        except Exception:  # the child workflow is still starting
            return False
        legs, done, custodian = shipment["legs"], len(shipment["handovers"]), shipment["custodian"]
        if done >= len(legs):
            return False
        receivers = ["Rzeszów-Jasionka hub", f"{self.request.recipient} border crossing",
                     f"{self.request.recipient} receiving unit"]
        receiver = receivers[min(done, len(receivers) - 1)]
        await self.client.record_handover(self.request.transfer_id, Handover(
            leg=legs[done], from_party=custodian, to_party=receiver, serials=self._eeum_serials()))
        self.say(f"  handover {legs[done]}: {custodian} → {receiver}")
        return True

    async def _backfill(self, status: TransferStatus) -> bool:
        if status.eeum_inventory_due and not status.eeum_inventory_done:
            await self.client.record_eeum_inventory(self.request.transfer_id, EeumInventory(
                inspector="dsca.eeum.inspector", serials=self._eeum_serials()))
            self.say("  EEUM initial serial-number inventory recorded")
            return True
        from tpt.ids import backfill_id

        try:
            state = await self.client.client.get_workflow_handle(backfill_id(self.request.transfer_id)).query(
                "status")
        except Exception:
            return False
        record = self._next_backfill(state)
        if record is None:
            return False
        await self.client.record_backfill(self.request.transfer_id, record)
        self.say(f"  backfill: {record.step.value} {record.reference or record.mechanism or ''} "
                 f"{record.quantity or ''}".rstrip())
        return True

    def _next_backfill(self, state: dict[str, object]) -> BackfillRecord | None:
        reporter = f"{self.request.donor.lower()}.mod.logistics"
        if state["mechanism"] is None:
            return BackfillRecord(reporter=reporter, step=BackfillStep.MECHANISM,
                                  mechanism=BackfillMechanism.FMS_CASE)
        if state["letter_of_request"] is None:
            return BackfillRecord(reporter=reporter, step=BackfillStep.LETTER_OF_REQUEST, reference="LOR-2026-001")
        if state["letter_of_offer"] is None:
            return BackfillRecord(reporter=reporter, step=BackfillStep.LETTER_OF_OFFER, reference="LOA-LT-B-UAB")
        outstanding = int(state["required"]) - int(state["replaced"])  # type: ignore[call-overload]
        if outstanding <= 0:
            return None
        return BackfillRecord(reporter=reporter, step=BackfillStep.DELIVERY, reference="partial delivery",
                              quantity=max(1, outstanding // 2))

    def _eeum_serials(self) -> list[str]:
        return [s for item in self.request.items if item.eeum for s in item.serials]


async def drive(client: TransferClient, request: TransferRequest, pause: float = 0.5,
                say: Say = print) -> TransferStatus:
    """Submit the request and let the simulated parties act until the transfer ends."""
    handle = await client.submit(request)
    say(f"submitted {request.transfer_id}: {request.donor} → {request.recipient}, "
        f"${request.total_value_usd:,.0f}")
    parties, stage = SimulatedParties(client, request, say), None
    while True:
        status = await client.status(request.transfer_id)
        if status.stage != stage:
            stage = status.stage
            say(f"stage {stage.value}" + (f": awaiting {'; '.join(status.awaiting)}" if status.awaiting else ""))
        if status.stage.is_terminal:
            return await handle.result()
        if await parties.act(status):
            await asyncio.sleep(pause)
        else:
            await asyncio.sleep(0.1)


async def run_demo(temporal: Client, settings: Settings) -> None:
    client = TransferClient(temporal, settings.task_queue)
    request = demo_request()
    status = await drive(client, request)
    print(f"demo transfer {request.transfer_id} reached {status.stage.value} "
          f"with {status.audit_events} audit events recorded")
    print(f"  see it in the UI: {settings.workflow_url(request.transfer_id)}", flush=True)
