"""What the Temporal UI shows — search attributes and current details — agrees with the audit history, in every
stage, including a transfer that needs attention."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client

from tpt import search_attributes as sa
from tpt.audit.store import AuditStore
from tpt.client import TransferClient
from tpt.contract import TransferRequest
from tpt.messages import Deadlines, EeumInventory, SignOff
from tpt.stages import Stage

from ..conftest import eventually
from ..keys import TEST_KEYS
from .conftest import RecordingNotifier, drive_until, example, running_worker


async def current_details(client: Client, transfer_id: str) -> str:
    metadata = await client.get_workflow_handle(transfer_id).query(
        "__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return metadata.current_details


async def attributes(client: Client, transfer_id: str) -> dict[str, object]:
    described = await client.get_workflow_handle(transfer_id).describe()
    found = described.typed_search_attributes
    return {key.name: found.get(key) for key in sa.ALL}


async def test_ui_attributes_and_details_match_the_audit_history(
    client: Client, audit_store: AuditStore, task_queue: str
) -> None:
    tpt = TransferClient(client, task_queue, TEST_KEYS)
    # EEUM's 90-day clock shrunk to 90 ticks of 20 ms, so the inventory falls overdue during the test.
    fast_clock = Deadlines(calendar_day=timedelta(milliseconds=20))
    targets: list[tuple[TransferRequest, Stage, Deadlines | None]] = [
        (example("patriot-de"), Stage.ALLY_SIGNOFF, None),
        (example("himars-pl"), Stage.US_REVIEW, None),
        (example("patriot-de"), Stage.CONGRESSIONAL_REVIEW, None),
        (example("javelin-lt"), Stage.SHIPMENT, None),
        (example("nvg-nl-dcs"), Stage.COMPLETED, None),
        (example("javelin-lt"), Stage.BACKFILL, fast_clock),
    ]
    async with running_worker(client, audit_store, task_queue, RecordingNotifier()):
        for request, stage, deadlines in targets:
            await tpt.submit(request, deadlines)
            await drive_until(tpt, request, stop=stage)
        flagged = targets[-1][0]
        await eventually(lambda: _needs_attention(tpt, flagged.transfer_id))
        rejected = example("patriot-de")
        await tpt.submit(rejected)
        await drive_until(tpt, rejected, stop=Stage.ALLY_SIGNOFF)
        await tpt.sign_off(rejected.transfer_id, SignOff(signer="de.bafa.signer", nation="DE", role="BAFA",
                                                         approve=False, request_digest=rejected.digest()))
        await tpt.handle(rejected.transfer_id).result()
        await asyncio.sleep(1)  # visibility is eventually consistent
        for request in [t[0] for t in targets] + [rejected]:
            await check_against_audit(client, audit_store, request.transfer_id)

        # Recording the overdue inventory clears the flag, in the UI and in the audit history alike.
        serials = [s for i in flagged.items if i.eeum for s in i.serials]
        await tpt.record_eeum_inventory(flagged.transfer_id, EeumInventory(inspector="dsca.eeum", serials=serials))
        await eventually(lambda: _attention_cleared(client, flagged.transfer_id))
        await check_against_audit(client, audit_store, flagged.transfer_id)
        for request, _, _ in targets:
            if not (await tpt.status(request.transfer_id)).stage.is_terminal:
                await tpt.handle(request.transfer_id).terminate("test done")


async def _needs_attention(tpt: TransferClient, transfer_id: str) -> bool:
    return (await tpt.status(transfer_id)).needs_attention


async def _attention_cleared(client: Client, transfer_id: str) -> bool:
    return (await attributes(client, transfer_id))["NeedsAttention"] is False


async def check_against_audit(client: Client, store: AuditStore, transfer_id: str) -> None:
    events = await store.history(transfer_id)
    row = await store.transfer(transfer_id)
    assert row is not None
    shown = await eventually(lambda: _settled(client, transfer_id, row.stage))
    last_stage = [e.payload["to"] for e in events if e.event_type == "STAGE_ENTERED"][-1]
    assert shown["TransferStage"] == row.stage == last_stage
    assert (shown["DonorNation"], shown["Recipient"]) == (row.donor, row.recipient)
    assert shown["ApprovalRoute"] == row.route
    assert shown["TotalValueUsd"] == float(row.total_value_usd or 0)
    assert shown["NeedsAttention"] is row.needs_attention
    flags = [e for e in events if e.event_type in ("NEEDS_ATTENTION", "ATTENTION_CLEARED")]
    assert row.needs_attention is bool(flags and flags[-1].event_type == "NEEDS_ATTENTION")
    if row.needs_attention:
        assert shown["BlockedReason"] == row.blocked_reason == flags[-1].payload["blocked_reason"]
    if not Stage(row.stage).is_terminal:  # the UI shows current details of running workflows only
        details = await current_details(client, transfer_id)
        assert f"**Stage:** {row.stage}" in details
        signers = [e.actor for e in events if e.event_type == "SIGN_OFF" and e.request_digest == row.request_digest]
        assert all(signer in details for signer in signers)
        if row.stage == "ALLY_SIGNOFF":
            assert "de.bafa.signer" in details  # the awaited signer is named
        if row.needs_attention:
            assert f"Needs attention:** {row.blocked_reason}" in details


async def _settled(client: Client, transfer_id: str, stage: str) -> dict[str, object] | None:
    shown = await attributes(client, transfer_id)
    return shown if shown["TransferStage"] == stage else None

