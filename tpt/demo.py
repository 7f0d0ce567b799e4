"""The demo transfer `make run` shows, and the simulated parties that drive any transfer to its end.

Each party acts only when the transfer waits for it, exactly as a person would through the SDK, signing each
decision with its own key (a `Keychain`; the demo's keys live in the state directory and are registered in the
signer registry when the demo starts).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

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
from tpt.signing import CONGRESSIONAL_LIAISON, EEUM_INSPECTOR, REQUESTER, US, WAIVER_OFFICIAL, Keychain, Party
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


EEUM_INSPECTOR_ID = "dsca.eeum.inspector"


def parties_for(donors: Iterable[str], requesters: Iterable[tuple[str, str]] = ()) -> list[Party]:
    """The people who decide on transfers from these donors: each donor's sign-off seats, the U.S. reviewers,
    officials, congressional liaison and EEUM inspector, and the given (requester, donor) pairs."""
    found: dict[str, Party] = {}
    us = registry.for_donor("US")  # the U.S. side is the same for every donor
    for donor in donors:
        for role, people in registry.for_donor(donor).signoff.seats.items():
            found |= {person: Party(person, donor, role) for person in people}
    for office, people in us.reviewers.items():
        found |= {person: Party(person, US, office) for person in people}
    found |= {person: Party(person, US, WAIVER_OFFICIAL) for person in us.waiver_officials}
    found |= {person: Party(person, US, CONGRESSIONAL_LIAISON) for person in us.congressional_recorders}
    found[EEUM_INSPECTOR_ID] = Party(EEUM_INSPECTOR_ID, US, EEUM_INSPECTOR)
    found |= {person: Party(person, donor, REQUESTER) for person, donor in requesters}
    return list(found.values())


def demo_keychain(directory: Path, request: TransferRequest) -> Keychain:
    """The demo parties' keys: read from `directory`, or made there on the first run (owner-only files)."""
    if (directory / "parties.json").exists():
        keys = Keychain.load(directory)
        if all(p.actor in keys for p in parties_for([request.donor], [(request.requested_by, request.donor)])):
            return keys
    keys = Keychain.generate(parties_for([request.donor], [(request.requested_by, request.donor)]))
    if directory.exists():
        for old in directory.iterdir():
            old.unlink()
    keys.save(directory)
    return keys


class SimulatedParties:
    """Donor signers, U.S. reviewer and officials, custodians, backfill office and EEUM inspector.

    `keys`: each decision is signed with the key of the party making it (default: the client's signer)."""

    def __init__(self, client: TransferClient, request: TransferRequest, say: Say = print,
                 keys: Keychain | None = None):
        self.client, self.request, self.say, self.keys = client, request, say, keys
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
            request_digest=status.request_digest), signer=self.keys)
        self.say(f"  {role} sign-off by {people[0]}")
        return True

    async def _review(self, status: TransferStatus) -> bool:
        if status.us_decision is not None or status.policy is None or status.policy.fast_track:
            return False  # decided, or consented by framework: the transfer is about to move on
        office = status.policy.route.value
        await self.client.us_decision(self.request.transfer_id, UsDecision(
            reviewer=self.registry.reviewers[office][0], office=office, outcome=UsOutcome.APPROVE,
            request_digest=status.request_digest), signer=self.keys)
        self.say(f"  U.S. consent by {office}")
        return True

    async def _waive(self, status: TransferStatus) -> bool:
        if status.congressional_review != "RUNNING":
            return False
        await self.client.emergency_waiver(self.request.transfer_id, EmergencyWaiver(
            official=self.registry.waiver_officials[0],
            justification="Emergency: imminent threat to Ukrainian air defence; the demo cannot wait 30 days."),
            signer=self.keys)
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
                inspector=EEUM_INSPECTOR_ID, serials=self._eeum_serials()), signer=self.keys)
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
                say: Say = print, keys: Keychain | None = None) -> TransferStatus:
    """Submit the request and let the simulated parties act until the transfer ends."""
    handle = await client.submit(request)
    say(f"submitted {request.transfer_id}: {request.donor} → {request.recipient}, "
        f"${request.total_value_usd:,.0f}")
    parties, stage = SimulatedParties(client, request, say, keys), None
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


async def register_demo_keys(settings: Settings, request: TransferRequest) -> Keychain:
    """The demo parties' keys, registered in the signer registry of `tpt dev`'s audit database (as its owner)."""
    import asyncpg

    from tpt.cli_support import audit_url
    from tpt.keys import store

    keys = demo_keychain(settings.state_dir / "demo-keys", request)
    conn = await asyncpg.connect(audit_url(settings))
    try:
        await store.add_all(conn, keys.registrations(), added_by="tpt dev --demo")
    finally:
        await conn.close()
    return keys


async def run_demo(temporal: Client, settings: Settings) -> None:
    client = TransferClient(temporal, settings.task_queue)
    request = demo_request()
    keys = await register_demo_keys(settings, request)
    print(f"demo parties sign with their keys in {settings.state_dir / 'demo-keys'}", flush=True)
    status = await drive(client, request, keys=keys)
    print(f"demo transfer {request.transfer_id} reached {status.stage.value} "
          f"with {status.audit_events} audit events recorded")
    print(f"  see it in the UI: {settings.workflow_url(request.transfer_id)}", flush=True)
