"""Signed decisions end to end: a real worker, the signer registry in Postgres, the audit bundle verified offline.

A forged signature, one replayed from another transfer or another request version, one made with a revoked,
expired or wrong-role key, one by an impostor and a missing one are each refused by the update's validator:
nothing reaches the history (no accepted update) or the audit store. Valid ones are accepted, and the exported
audit bundle verifies them with no database.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from activities.notify import DeliveryNotice
from tpt.audit import bundle
from tpt.audit.chain import event_hash
from tpt.audit.events import AuditEvent
from tpt.audit.store import AuditStore
from tpt.client import TransferClient
from tpt.errors import DecisionRefused
from tpt.ids import shipment_id
from tpt.keys import store as keys
from tpt.messages import Amendment, EmergencyWaiver, OpsAction, SignOff, StepRetry, UsDecision, UsOutcome
from tpt.signing import REQUESTER, DecisionContext, KeyRegistration, SignaturePolicy, Signer, verify_recorded
from tpt.stages import Stage
from workers.transfer_worker import WORKFLOWS, build_worker

from ..conftest import Database, eventually
from ..keys import OPERATOR_ID, TEST_KEYS, key_files
from ..workflow.conftest import drive_until, example, running_worker

TPT = str(Path(sys.executable).parent / "tpt")
NO_DATABASE = "postgresql://nobody@127.0.0.1:9/nowhere"


async def accepted_updates(client: Client, workflow_id: str) -> int:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return sum(1 for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)


async def event_types(audit_store: AuditStore, transfer_id: str) -> list[str]:
    return [e.event_type for e in await audit_store.history(transfer_id)]


async def stage_is(tpt: TransferClient, transfer_id: str, stage: Stage) -> bool:
    return (await tpt.status(transfer_id)).stage is stage


async def tpt_command(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(TPT, *args, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode(), err.decode()


def signed(decision: SignOff, signer: Signer, context: DecisionContext) -> SignOff:
    return decision.model_copy(update={"signature": signer.sign(decision, "sign_off", context)})


async def register(admin_url: str, signer: Signer, nation: str, role: str, **validity: datetime) -> str:
    conn = await asyncpg.connect(admin_url)
    try:
        return (await keys.add(conn, KeyRegistration.of(signer, nation, role), added_by="test", **validity))[0].key_id
    finally:
        await conn.close()


async def test_bad_signatures_are_refused_with_nothing_recorded_and_good_ones_verify_offline(
    client: Client, audit_store: AuditStore, database: Database, task_queue: str, tmp_path: Path
) -> None:
    tpt = TransferClient(client, task_queue, TEST_KEYS)
    request, other = example("patriot-de", requested_by="de.requester"), example("patriot-de")
    tid, digest = request.transfer_id, request.digest()
    bafa = SignOff(signer="de.bafa.signer", nation="DE", role="BAFA", approve=True, request_digest=digest)
    here = DecisionContext(tid, digest, Stage.ALLY_SIGNOFF.value)
    genuine = TEST_KEYS["de.bafa.signer"]
    attacker = Signer.generate("de.bafa.signer")  # never registered
    revoked, expired, wrong_role = (Signer.generate("de.bafa.signer") for _ in range(3))
    now = datetime.now(UTC)
    await register(database.admin_url, revoked, "DE", "BAFA")
    await register(database.admin_url, expired, "DE", "BAFA", valid_from=now - timedelta(days=2),
                   valid_until=now - timedelta(days=1))
    await register(database.admin_url, wrong_role, "DE", REQUESTER)

    async with running_worker(client, audit_store, task_queue):
        await tpt.submit(request)
        await tpt.submit(other)
        await eventually(lambda: stage_is(tpt, tid, Stage.ALLY_SIGNOFF))
        status = await tpt.status(tid)
        assert status.signatures_required and status.signers_loaded_at is not None
        # revoked after this stage loaded the registry: refused from the next refresh on
        conn = await asyncpg.connect(database.admin_url)
        await keys.revoke(conn, revoked.key_id, by="test", reason="token lost")
        await conn.close()
        assert (await tpt.refresh_signers(tid)).signers_loaded_at > status.signers_loaded_at  # type: ignore[operator]

        forged_signature = attacker.sign(bafa, "sign_off", here).signature
        cases = {
            "missing": (bafa, "is not signed"),
            "forged": (bafa.model_copy(update={"signature": genuine.sign(bafa, "sign_off", here).model_copy(
                update={"signature": forged_signature})}), "does not verify with key"),
            "other transfer": (signed(bafa, genuine, DecisionContext(other.transfer_id, digest, "ALLY_SIGNOFF")),
                               f"made for transfer {other.transfer_id}"),
            "revoked": (signed(bafa, revoked, here), "was revoked"),
            "expired": (signed(bafa, expired, here), "expired at"),
            "wrong role": (signed(bafa, wrong_role, here), "registered for requester of DE; this decision needs a "
                                                           "key for BAFA of DE"),
            "impostor": (signed(bafa, TEST_KEYS["de.bmvg.signer"], here), "signature is by de.bmvg.signer"),
        }
        version_1 = signed(bafa, genuine, here)  # valid now; replayed after the amendment below
        raw = TransferClient(client, task_queue)  # sends each decision as it is, signed or not
        for case, (decision, reason) in cases.items():
            await assert_refused_and_nothing_recorded(raw, audit_store, tid, decision, reason, case)

        fewer = request.model_copy(update={"items": [request.items[0].model_copy(update={"quantity": 4})]})
        await tpt.amend(tid, Amendment(actor="de.requester", request=fewer, reason="fewer available"))

        async def signoff_restarted() -> bool:
            return (await event_types(audit_store, tid))[-1:] == ["STAGE_ENTERED"]

        await eventually(signoff_restarted)
        new = fewer.digest()
        await assert_refused_and_nothing_recorded(raw, audit_store, tid, version_1, "current version (v2)",
                                                  "other request version")
        moved = version_1.model_copy(update={"request_digest": new})  # the field moved on, the signature did not
        await assert_refused_and_nothing_recorded(raw, audit_store, tid, moved, "made over request version",
                                                  "other request version, field edited")

        # valid: the SDK signs with the decider's key; the command line signs with a key file
        await tpt.sign_off(tid, SignOff(signer="de.bmvg.signer", nation="DE", role="MOD", approve=True,
                                        request_digest=new))
        env = os.environ | {"TPT_TEMPORAL_ADDRESS": client.service_client.config.target_host,
                            "TPT_TASK_QUEUE": task_queue, "TPT_DATABASE_URL": database.admin_url,
                            "TPT_SIGNING_KEY": str(key_files(tmp_path / "keys") / "de.bafa.signer.key")}
        code, out, err = await tpt_command(env, "sign-off", tid, "--role", "BAFA", "--approve")
        assert code == 0, err
        await eventually(lambda: stage_is(tpt, tid, Stage.US_REVIEW))
        await tpt.us_decision(tid, UsDecision(reviewer="pm.rsat.reviewer", office="PM_RSAT",
                                              outcome=UsOutcome.APPROVE, request_digest=new))
        await eventually(lambda: stage_is(tpt, tid, Stage.CONGRESSIONAL_REVIEW))
        await tpt.emergency_waiver(tid, EmergencyWaiver(
            official="state.secretary.delegate", justification="Imminent ballistic missile threat to Kyiv."))
        await eventually(lambda: stage_is(tpt, tid, Stage.SHIPMENT))
        history = await client.get_workflow_handle(tid).fetch_history()
        for handle_id in (tid, other.transfer_id):
            await client.get_workflow_handle(handle_id).terminate("test done")

    # the new code path replays (its history holds the signer-registry loads)
    replayed = await Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter).replay_workflow(history)
    assert replayed.replay_failure is None

    events = await audit_store.history(tid)
    decisions = [e for e in events if e.event_type in ("SIGN_OFF", "REQUEST_AMENDED", "US_DECISION",
                                                       "EMERGENCY_WAIVER")]
    assert [(e.event_type, e.actor) for e in decisions] == [
        ("REQUEST_AMENDED", "de.requester"), ("SIGN_OFF", "de.bmvg.signer"), ("SIGN_OFF", "de.bafa.signer"),
        ("US_DECISION", "pm.rsat.reviewer"), ("EMERGENCY_WAIVER", "state.secretary.delegate")]
    for e in decisions:
        assert e.payload["signature"]["key_id"] == TEST_KEYS[e.actor].key_id
        assert e.payload["signature_key"]["public_key"] == TEST_KEYS[e.actor].public_key

    # offline: export with the database, verify with none (and against the registry's keys)
    target, registry = tmp_path / f"{tid}.jsonl", tmp_path / "registry.json"
    code, _, err = await tpt_command(env, "audit", "export", tid, "-o", str(target))
    assert code == 0, err
    code, out, err = await tpt_command(env, "keys", "list", "--json")
    assert code == 0, err
    registry.write_text(out)
    offline = {k: v for k, v in env.items() if not k.startswith("TPT_")} | {"TPT_DATABASE_URL": NO_DATABASE}
    code, out, err = await tpt_command(offline, "audit", "verify-bundle", str(target), "--keys", str(registry))
    assert code == 0 and "5 signed decision(s), every signature verified with a registered key" in out, err
    assert bundle.verify(target.read_bytes()).signatures == 5
    # a registry that does not hold the signing key: the bundle verifies, its signer is not trusted
    stranger = [k for k in json.loads(registry.read_text()) if k["actor"] != "pm.rsat.reviewer"]
    with pytest.raises(bundle.BrokenBundle, match="not in the trusted registry"):
        bundle.verify(target.read_bytes(), {k["key_id"]: k for k in stranger})
    # a signature altered in the bundle, every hash recomputed after it: the signature check still catches it
    with pytest.raises(bundle.BrokenBundle, match="signature not valid"):
        bundle.verify(rechained(target.read_bytes(), "US_DECISION", lambda p: p | {"comment": "approved, no provisos"}))


def rechained(data: bytes, event_type: str, change) -> bytes:  # type: ignore[no-untyped-def]
    """The bundle with one event's payload changed and every hash after it recomputed (a consistent forgery)."""
    events = [AuditEvent.model_validate_json(line) for line in data.splitlines()[:-1]]
    fixed, prev = [], events[0].prev_hash
    for event in events:
        fields = event.model_dump(mode="json")
        if event.event_type == event_type:
            fields["payload"] = change(fields["payload"])
        fields["prev_hash"] = prev
        fields["hash"] = prev = event_hash(fields)
        fixed.append(AuditEvent.model_validate(fields))
    return bundle.export(fixed)


async def assert_refused_and_nothing_recorded(tpt: TransferClient, audit_store: AuditStore, tid: str,
                                              decision: SignOff, reason: str, case: str) -> None:
    before_events, before_updates = await event_types(audit_store, tid), await accepted_updates(tpt.client, tid)
    with pytest.raises(DecisionRefused) as refused:
        await tpt.sign_off(tid, decision)
    assert reason in refused.value.reason, f"{case}: {refused.value.reason}"
    assert await event_types(audit_store, tid) == before_events, case
    assert await accepted_updates(tpt.client, tid) == before_updates, f"{case}: the update reached the history"


class FailingNotifier:
    """The SCO notification adapter, failing until told otherwise (a step for an operator)."""

    def __init__(self) -> None:
        self.failing = True

    async def notify(self, office: str, notice: DeliveryNotice) -> str:
        if self.failing:
            raise ConnectionError(f"{office} gateway down")
        return f"ok:{office}"


async def test_operators_are_registered_and_their_signatures_bind_the_stuck_step(
    client: Client, audit_store: AuditStore, task_queue: str
) -> None:
    tpt, notifier = TransferClient(client, task_queue, TEST_KEYS), FailingNotifier()
    request = example("javelin-lt")
    tid, child = request.transfer_id, shipment_id(request.transfer_id)
    fast = StepRetry(attempts=2, first_backoff=timedelta(milliseconds=50), max_backoff=timedelta(milliseconds=50),
                     timeout=timedelta(seconds=1))
    operator = TEST_KEYS[OPERATOR_ID]
    async with running_worker(client, audit_store, task_queue, notifier):  # type: ignore[arg-type]
        await tpt.submit(request, step_retry=fast)
        await drive_until(tpt, request, stop=Stage.SHIPMENT)

        async def stuck() -> bool:
            await drive_until_delivered(tpt, request)
            try:
                return await client.get_workflow_handle(child).query("stuck_step") is not None
            except Exception:  # the shipment workflow is still starting
                return False

        await eventually(stuck, timeout=30)
        shipment = client.get_workflow_handle(child)
        before_events, before_updates = await event_types(audit_store, tid), await accepted_updates(client, child)
        unknown = OpsAction(operator="someone.else", reason="gateway is back")
        replayed = await tpt.sign_ops_action(tid, OpsAction(operator=OPERATOR_ID, reason="gateway is back"),
                                             "ops_skip")  # signed for a skip: not a retry
        for action, reason in ((unknown, "not a registered operator"), (replayed, "for a ops_skip decision")):
            with pytest.raises(Exception) as refused:
                await shipment.execute_update("ops_retry", action)
            assert reason in str(getattr(refused.value, "cause", refused.value)), refused.value
        assert await event_types(audit_store, tid) == before_events
        assert await accepted_updates(client, child) == before_updates
        notifier.failing = False
        action = await tpt.sign_ops_action(tid, OpsAction(operator=OPERATOR_ID, reason="gateway is back"), "ops_retry")
        assert action.signature is not None and action.signature.signer == operator.actor
        await shipment.execute_update("ops_retry", action)
        await eventually(lambda: stage_is(tpt, tid, Stage.BACKFILL), timeout=30)
        await tpt.handle(tid).terminate("test done")
    retry = next(e for e in await audit_store.history(tid) if e.event_type == "OPS_RETRY")
    assert (retry.actor, retry.role) == (OPERATOR_ID, "operator")
    found = verify_recorded(event_type=retry.event_type, transfer_id=retry.transfer_id, actor=retry.actor,
                            role=retry.role, request_digest=retry.request_digest, payload=retry.payload)
    assert found is not None and "stuck step 'notify security cooperation offices'" in found.subject


async def drive_until_delivered(tpt: TransferClient, request) -> None:  # type: ignore[no-untyped-def]
    from tpt.demo import SimulatedParties

    status = await tpt.status(request.transfer_id)
    if status.stage is Stage.SHIPMENT:
        await SimulatedParties(tpt, request, lambda _: None, TEST_KEYS).act(status)


async def test_a_worker_that_does_not_require_signatures_still_refuses_a_bad_one(
    client: Client, audit_store: AuditStore, task_queue: str
) -> None:
    tpt = TransferClient(client, task_queue)  # no keys: decisions go unsigned
    request = example("patriot-de")
    tid, digest = request.transfer_id, request.digest()
    worker = build_worker(client, audit_store, task_queue, signature_policy=SignaturePolicy(decisions=False))
    async with worker:
        await tpt.submit(request)
        await eventually(lambda: stage_is(tpt, tid, Stage.ALLY_SIGNOFF))
        assert not (await tpt.status(tid)).signatures_required
        status = await tpt.sign_off(tid, SignOff(signer="de.bmvg.signer", nation="DE", role="MOD", approve=True,
                                                 request_digest=digest))
        assert [s.signer for s in status.signatures] == ["de.bmvg.signer"]
        bad = signed(SignOff(signer="de.bafa.signer", nation="DE", role="BAFA", approve=True, request_digest=digest),
                     Signer.generate("de.bafa.signer"), DecisionContext(tid, digest, "ALLY_SIGNOFF"))
        with pytest.raises(DecisionRefused, match="not in the signer registry"):
            await tpt.sign_off(tid, bad)
        await tpt.handle(tid).terminate("test done")
    accepted = next(e for e in await audit_store.history(tid) if e.event_type == "SIGN_OFF")
    assert accepted.actor == "de.bmvg.signer" and "signature" not in accepted.payload
