"""The demo transfer `make run` shows: a simulated donor, U.S. reviewer and custodians drive it to COMPLETED."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from temporalio.client import Client

from tpt.client import TransferClient
from tpt.contract import TransferRequest
from tpt.messages import BackfillDelivery, Handover, SignOff, TransferStatus, UsDecision, UsOutcome
from tpt.settings import Settings


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


async def drive(client: TransferClient, request: TransferRequest, pause: float = 1.0,
                say=print) -> TransferStatus:
    """Act as each party in turn, printing the stage after every decision."""
    tid = request.transfer_id
    await client.submit(request)
    say(f"submitted {tid}: {request.donor} → {request.recipient}, ${request.total_value_usd:,.0f}")
    steps = [
        ("donor sign-off", client.sign_off, SignOff(signer="lt.mod.signer", nation="LT", role="MOD", approve=True)),
        ("U.S. consent", client.us_decision,
         UsDecision(reviewer="pm.rsat.reviewer", office="PM/RSAT", outcome=UsOutcome.APPROVE)),
        ("handover at Rzeszów", client.record_handover,
         Handover(leg="hub-to-unit", from_party="LT logistics", to_party="UA receiving unit",
                  serials=list(request.items[0].serials), delivered=True)),
        ("backfill delivered", client.record_backfill,
         BackfillDelivery(reporter="lt.mod.logistics", quantity=sum(i.quantity for i in request.items))),
    ]
    status = await _wait_for_stage_change(client, tid, None)
    for label, send, message in steps:
        await asyncio.sleep(pause)
        await send(tid, message)  # type: ignore[operator]
        status = await _wait_for_stage_change(client, tid, status.stage)
        say(f"  {label:<22} → {status.stage.value}")
    return status


async def _wait_for_stage_change(client: TransferClient, tid: str, old: object) -> TransferStatus:
    while True:
        status = await client.status(tid)
        if status.stage != old and status.stage.value != "REQUESTED":
            return status
        await asyncio.sleep(0.1)


async def run_demo(temporal: Client, settings: Settings) -> None:
    client = TransferClient(temporal, settings.task_queue)
    request = demo_request()
    status = await drive(client, request)
    print(f"demo transfer {request.transfer_id} reached {status.stage.value} "
          f"with {status.audit_events} audit events recorded")
    print(f"  see it in the UI: {settings.workflow_url(request.transfer_id)}", flush=True)
