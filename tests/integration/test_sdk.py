"""The client SDK alone, against the real dev server and Postgres: a transfer from submission to completion,
idempotent submission, and every typed error."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from temporalio.client import Client, WorkflowUpdateFailedError

from tpt.audit.store import AuditStore
from tpt.client import TransferClient
from tpt.errors import (
    DecisionRefused,
    TemporalUnreachable,
    TransferConflict,
    TransferNotFound,
    TransferValidationError,
    WorkerUnavailable,
)
from tpt.messages import (
    Amendment,
    BackfillMechanism,
    BackfillRecord,
    BackfillStep,
    Deadlines,
    EmergencyWaiver,
    Handover,
    SignOff,
    TransferStatus,
    UsDecision,
    UsOutcome,
    Withdrawal,
)
from tpt.request_file import load_request
from tpt.stages import Stage

from ..conftest import Database, eventually, free_port
from ..keys import TEST_KEYS
from ..workflow.conftest import drive_until, example, running_worker, stages_entered

DE_SEATS = {"MOD": "de.bmvg.signer", "BAFA": "de.bafa.signer"}
LEGS = [("depot-to-hub", "DE depot", "Rzeszów-Jasionka hub"), ("hub-to-border", "Rzeszów-Jasionka hub", "UA border"),
        ("border-to-unit", "UA border", "UA air defence unit")]


class Parties:
    """Each party acts once, when the watched transfer waits for it: the SDK's calls, nothing else."""

    def __init__(self, tpt: TransferClient, tid: str):
        self.tpt, self.tid = tpt, tid
        self.done: set[str] = set()

    async def act(self, status: TransferStatus) -> None:
        if status.stage is Stage.ALLY_SIGNOFF and len(status.signatures) < status.quorum:
            role = next(r for r in DE_SEATS if r not in {s.role for s in status.signatures})
            await self.tpt.sign_off(self.tid, SignOff(signer=DE_SEATS[role], nation="DE", role=role, approve=True,
                                                      request_digest=status.request_digest))
        elif status.stage is Stage.US_REVIEW and status.us_decision is None:
            await self.tpt.us_decision(self.tid, UsDecision(
                reviewer="pm.rsat.reviewer", office="PM_RSAT", outcome=UsOutcome.APPROVE,
                request_digest=status.request_digest, provisos=["no further retransfer without U.S. consent"]))
        elif status.stage is Stage.CONGRESSIONAL_REVIEW and self._first("waiver"):
            await self.tpt.emergency_waiver(self.tid, EmergencyWaiver(
                official="state.secretary.delegate", justification="Imminent missile threat to Ukrainian cities."))
        elif status.stage is Stage.SHIPMENT and self._first("shipment"):
            for leg, giver, taker in LEGS:
                await self.tpt.record_handover(self.tid, Handover(leg=leg, from_party=giver, to_party=taker))
        elif status.stage is Stage.BACKFILL and self._first("backfill"):
            await self._backfill(status.backfill_required)

    async def _backfill(self, required: int) -> None:
        for step, extra in [(BackfillStep.MECHANISM, {"mechanism": BackfillMechanism.FMS_CASE}),
                            (BackfillStep.LETTER_OF_REQUEST, {"reference": "LOR-DE-2026-031"}),
                            (BackfillStep.LETTER_OF_OFFER, {"reference": "GY-B-ZUH"}),
                            (BackfillStep.DELIVERY, {"quantity": required, "reference": "all units"})]:
            state = await self.tpt.record_backfill(self.tid, BackfillRecord(reporter="de.baainbw", step=step, **extra))
        assert state.replaced == required

    def _first(self, step: str) -> bool:
        new = step not in self.done
        self.done.add(step)
        return new


async def test_sdk_drives_a_transfer_from_submission_to_completion(
    client: Client, audit_store: AuditStore, database: Database, task_queue: str
) -> None:
    tpt = TransferClient(client, task_queue, TEST_KEYS)
    request = example("patriot-de")  # individual review, 30-day congressional review waived
    tid, seen = request.transfer_id, []
    async with running_worker(client, audit_store, task_queue):
        await tpt.submit(request)
        parties = Parties(tpt, tid)
        async for status in tpt.watch(tid, interval=0.1):
            seen.append(status.stage)
            await parties.act(status)
        result = await tpt.handle(tid).result()

    assert result.stage is Stage.COMPLETED and result.backfill_replaced == 20
    assert _collapsed(seen) == ["ALLY_SIGNOFF", "US_REVIEW", "CONGRESSIONAL_REVIEW", "SHIPMENT", "BACKFILL",
                                "COMPLETED"]
    events = await tpt.history(tid, audit_store)
    assert [e.event_type for e in events][:2] == ["TRANSFER_REQUESTED", "STAGE_ENTERED"]
    assert {"SIGN_OFF", "US_DECISION", "EMERGENCY_WAIVER", "HANDOVER", "BACKFILL_RECORDED"} <= {
        e.event_type for e in events}
    assert [e.event_id for e in await tpt.history(tid, database.admin_url)] == [e.event_id for e in events]
    assert await stages_entered(audit_store, tid) == _collapsed(seen)
    found = await eventually(lambda: _listed(tpt, tid, stage=Stage.COMPLETED, donor="de", recipient="UA"))
    assert (found.donor, found.route, found.total_value_usd, found.execution_status) == (
        "DE", "PM_RSAT", 66_340_000.0, "COMPLETED")
    assert await _listed(tpt, tid, stage=Stage.SHIPMENT) is None
    assert await _listed(tpt, tid, donor="PL") is None


async def test_submit_is_idempotent_and_refuses_a_different_request(
    client: Client, audit_store: AuditStore, task_queue: str
) -> None:
    tpt = TransferClient(client, task_queue, TEST_KEYS)
    request = example("patriot-de", requested_by="de.requester")
    tid = request.transfer_id
    fewer = request.model_copy(update={"items": [request.items[0].model_copy(update={"quantity": 4})]})
    other = request.model_copy(update={"end_use": "Training"})
    async with running_worker(client, audit_store, task_queue):
        first = await tpt.ensure_submitted(request)
        again = await tpt.ensure_submitted(request.model_dump(mode="json"))  # the same, as parsed JSON
        assert (first.created, again.created) == (True, False)
        assert (await again.handle.describe()).run_id == first.handle.result_run_id
        with pytest.raises(TransferConflict) as running:
            await tpt.submit(other)
        assert (running.value.existing_digest, running.value.submitted_digest) == (request.digest(), other.digest())

        await tpt.amend(tid, Amendment(actor="de.requester", request=fewer, reason="fewer available"))
        assert not (await tpt.ensure_submitted(fewer)).created  # the current version is the same transfer
        assert not (await tpt.ensure_submitted(request)).created  # and so is the one first submitted

        await tpt.withdraw(tid, Withdrawal(actor="de.requester", reason="stock redeployed"))
        assert (await tpt.handle(tid).result()).stage is Stage.WITHDRAWN
        assert not (await tpt.ensure_submitted(request)).created
        assert not (await tpt.ensure_submitted(fewer)).created
        with pytest.raises(TransferConflict) as completed:
            await tpt.submit(other)
        assert completed.value.existing_digest == fewer.digest() and "new transfer id" in str(completed.value)
    await eventually(lambda: _count_is(client, f'WorkflowId = "{tid}"', 1))


async def test_refusals_and_missing_transfers_raise_typed_errors(
    client: Client, audit_store: AuditStore, task_queue: str
) -> None:
    tpt = TransferClient(client, task_queue, TEST_KEYS)
    request = example("javelin-lt")
    tid = request.transfer_id
    await tpt.submit(request)
    tpt.query_timeout = timedelta(seconds=1)
    with pytest.raises(WorkerUnavailable, match="no worker answered"):  # nothing polls this task queue yet
        await tpt.status(tid)
    async with running_worker(client, audit_store, task_queue):
        await eventually(lambda: _stage_is(tpt, tid, Stage.ALLY_SIGNOFF))
        digest = request.digest()
        with pytest.raises(DecisionRefused) as refused:
            await tpt.sign_off(tid, SignOff(signer="lt.mfa.signer", nation="LT", role="MOD", approve=True,
                                            request_digest=digest))
        assert "holds no MOD seat" in refused.value.reason and refused.value.transfer_id == tid
        assert isinstance(refused.value, WorkflowUpdateFailedError)  # code catching Temporal's error still works
        with pytest.raises(DecisionRefused, match="accepted once the transfer reaches SHIPMENT; it is in ALLY"):
            await tpt.record_handover(tid, Handover(leg="depot-to-hub", from_party="LT depot", to_party="hub"))
        await tpt.handle(tid).terminate("test done")
        with pytest.raises(DecisionRefused, match="already ended"):
            await tpt.withdraw(tid, Withdrawal(actor=request.requested_by, reason="too late"))
        with pytest.raises(TransferConflict):  # terminated: compared with the input it was started with
            await tpt.submit(request.model_copy(update={"end_use": "Training"}))

        unknown = "TPT-T-NO-SUCH-TRANSFER"
        for call in (tpt.status(unknown), tpt.withdraw(unknown, Withdrawal(actor="a", reason="b")),
                     tpt.record_backfill(unknown, BackfillRecord(reporter="a", step=BackfillStep.MECHANISM)),
                     tpt.history(unknown, audit_store)):
            with pytest.raises(TransferNotFound, match=unknown):
                await call


async def test_invalid_input_and_unreachable_temporal_raise_typed_errors(client: Client, task_queue: str) -> None:
    tpt = TransferClient(client, task_queue, TEST_KEYS)
    bad = example("himars-pl").model_dump(mode="json")
    bad["items"][0] |= {"usml_category": "XXII", "colour": "green"}
    with pytest.raises(TransferValidationError) as invalid:
        await tpt.submit(bad)
    assert invalid.value.paths == ["items[0].usml_category", "items[0].colour"]
    with pytest.raises(TransferNotFound):  # nothing was started
        await tpt.status(bad["transfer_id"])
    with pytest.raises(TransferValidationError, match="donor: 'DEU' is not a two-letter"):
        await tpt.list(donor="DEU")
    async with await TransferClient.connect(address=tpt.address, namespace="default", task_queue=task_queue) as own:
        assert own.task_queue == task_queue and await own.list(donor="ZZ") == []
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(TemporalUnreachable) as unreachable:
        await TransferClient.connect(address=address, task_queue=task_queue)
    assert address in str(unreachable.value) and "start it with `tpt dev`" in str(unreachable.value)


async def test_list_finds_the_transfers_that_need_attention(
    client: Client, audit_store: AuditStore, task_queue: str
) -> None:
    tpt = TransferClient(client, task_queue, TEST_KEYS)
    request = example("javelin-lt")  # EEUM: the initial inventory falls due 90 "days" after delivery
    tid = request.transfer_id
    async with running_worker(client, audit_store, task_queue):
        await tpt.submit(request, Deadlines(calendar_day=timedelta(milliseconds=20)))
        await drive_until(tpt, request, stop=Stage.BACKFILL)
        await eventually(lambda: _needs_attention(tpt, tid))
        flagged = await eventually(lambda: _listed(tpt, tid, needs_attention=True, donor="LT"))
        assert flagged.needs_attention and "EEUM initial inventory overdue" in (flagged.blocked_reason or "")
        assert await _listed(tpt, tid, needs_attention=False) is None
        await tpt.handle(tid).terminate("test done")


def test_yaml_requests_keep_norway_and_exact_amounts(tmp_path: Path) -> None:
    data = example("himars-pl").model_dump(mode="json") | {"donor": "NO", "fms_case": "NO-B-ZAA"}
    # Unquoted, as people write YAML: `NO` would be False in plain YAML 1.1, and 1008000.10 a binary float.
    text = yaml.safe_dump(data).replace("donor: 'NO'", "donor: NO").replace("'1008000.00'", "1008000.10")
    assert "donor: NO\n" in text and "unit_value_usd: 1008000.10\n" in text
    (tmp_path / "request.yaml").write_text(text)
    request = load_request(tmp_path / "request.yaml")
    assert request.donor == "NO" and request.items[0].unit_value_usd == Decimal("1008000.10")


def _collapsed(stages: list[Stage]) -> list[str]:
    """Stages in the order first seen; REQUESTED lasts only until the reference data is loaded."""
    order: list[str] = []
    for stage in stages:
        if stage is not Stage.REQUESTED and (not order or order[-1] != stage.value):
            order.append(stage.value)
    return order


async def _listed(tpt: TransferClient, tid: str, **filters: object):  # type: ignore[no-untyped-def]
    return next((s for s in await tpt.list(**filters) if s.transfer_id == tid), None)  # type: ignore[arg-type]


async def _stage_is(tpt: TransferClient, tid: str, stage: Stage) -> bool:
    return (await tpt.status(tid)).stage is stage


async def _needs_attention(tpt: TransferClient, tid: str) -> bool:
    return (await tpt.status(tid)).needs_attention


async def _count_is(client: Client, query: str, expected: int) -> bool:
    return (await client.count_workflows(query)).count == expected
