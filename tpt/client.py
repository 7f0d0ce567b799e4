"""Client SDK: submit transfers, send decisions, read their status, list, watch and audit them.

Every method raises the typed errors of tpt/errors.py, never Temporal's own.
"""

from __future__ import annotations

import asyncio
import builtins
import gc
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, SecretStr, ValidationError
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.converter import DataConverter
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import TLSConfig

from tpt.contract import TransferRequest
from tpt.errors import (
    DecisionRefused,
    TemporalUnreachable,
    TransferBusy,
    TransferConflict,
    TransferNotFound,
    TransferValidationError,
    translated,
)
from tpt.ids import backfill_id, shipment_id
from tpt.messages import (
    Amendment,
    BackfillRecord,
    BackfillStatus,
    Deadlines,
    EeumInventory,
    EmergencyWaiver,
    Handover,
    JointResolution,
    OpsAction,
    ShipmentStatus,
    SignOff,
    StepRetry,
    TransferInput,
    TransferStatus,
    UsDecision,
    Withdrawal,
)
from tpt.payload_limits import check_size
from tpt.request_file import parse_request
from tpt.settings import Settings
from tpt.signing import DecisionContext, Keychain, Signer, decision_stage, ops_subject
from tpt.stages import Stage
from tpt.visibility import TransferSummary, summarize, transfer_query
from workflows.details import request_details

if TYPE_CHECKING:
    from tpt.audit.events import AuditEvent
    from tpt.audit.store import AuditStore

R = TypeVar("R")
M = TypeVar("M", bound=BaseModel)
D = TypeVar("D", SignOff, UsDecision, EmergencyWaiver, JointResolution, Withdrawal, Amendment, EeumInventory,
            OpsAction)
SignWith = Signer | Keychain | None  # one person's key, or several people's (each decision by its actor's key)


def _decision(kind: type[M], message: object) -> M:
    """The decision validated again as `kind` (a dict, another model, or one built with model_construct is checked
    too) and within the payload limit, so a bad one is refused here, by name, before Temporal sees it."""
    data = message.model_dump(mode="json") if isinstance(message, BaseModel) else message
    try:
        decision = kind.model_validate(data)
    except ValidationError as err:
        raise TransferValidationError.from_pydantic(err, whole=kind.__name__) from err
    check_size(kind.__name__, decision)
    return decision


async def _again_while_busy(send: Callable[[], Awaitable[R]], attempts: int = 30) -> R:
    """Send again a decision refused only because the transfer was moving on at that moment (TransferBusy)."""
    for attempt in range(attempts):
        try:
            return await send()
        except TransferBusy:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
    raise AssertionError("unreachable")


async def connect(settings: Settings) -> Client:
    """A client for the configured Temporal: plaintext by default; TLS as soon as a CA, a client certificate or an
    API key is set (a managed Temporal). Raises ValueError naming the setting when a TLS file is missing or alone."""
    from pathlib import Path

    from temporalio.service import TLSConfig

    def pem(setting: str, path: Path | None) -> bytes | None:
        try:
            return path.read_bytes() if path else None
        except OSError as err:
            raise ValueError(f"{setting}={path} cannot be read: {err.strerror}") from err

    cert, key, ca = settings.temporal_tls_cert, settings.temporal_tls_key, settings.temporal_tls_ca
    if (cert is None) != (key is None):
        raise ValueError("TPT_TEMPORAL_TLS_CERT and TPT_TEMPORAL_TLS_KEY go together: set both for mutual TLS")
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    tls: TLSConfig | bool = False
    if cert or ca or api_key:
        tls = TLSConfig(server_root_ca_cert=pem("TPT_TEMPORAL_TLS_CA", ca),
                        client_cert=pem("TPT_TEMPORAL_TLS_CERT", cert),
                        client_private_key=pem("TPT_TEMPORAL_TLS_KEY", key))
    return await Client.connect(
        settings.temporal_address, namespace=settings.temporal_namespace, data_converter=converter_for(settings),
        tls=tls, api_key=api_key,
    )


def converter_for(settings: Settings) -> DataConverter:
    """The pydantic converter with the payload-encryption codec of the configured keyring (tpt/codec); raises
    KeyringError (a ValueError) naming the setting when the keyring is unusable."""
    from tpt.codec import data_converter, keyring_for

    return data_converter(keyring_for(settings))


@dataclass(frozen=True)
class Submission:
    handle: WorkflowHandle[Any, TransferStatus]
    created: bool  # False: the same request was already submitted, nothing new started


class TransferClient:
    """Submit transfers and send decisions. Updates return the transfer's status once the decision is
    recorded in the audit history; a refusal raises DecisionRefused with the workflow's reason."""

    # Past these, a missing worker is reported (WorkerUnavailable) rather than waited for indefinitely.
    query_timeout = timedelta(seconds=10)  # a status query
    update_timeout = timedelta(seconds=60)  # a decision: accepted, recorded in the audit store, answered
    child_start_polls = 50  # × 0.1 s: how long a handover or backfill record waits for its child workflow to start

    def __init__(self, client: Client, task_queue: str, signer: SignWith = None):
        self.client = client
        self.task_queue = task_queue
        self.signer = signer  # signs every decision unless a call gives its own `signer=`

    @classmethod
    async def connect(cls, settings: Settings | None = None, *, address: str | None = None,
                      namespace: str | None = None, task_queue: str | None = None,
                      tls: bool | TLSConfig | None = None, api_key: str | None = None) -> TransferClient:
        """Connect with `settings` (default: the TPT_* environment), explicit arguments taking precedence.
        `tls` (True or a TLSConfig) overrides the TLS files of the settings; an API key implies TLS."""
        settings = _overridden(settings or Settings(), address=address, namespace=namespace, task_queue=task_queue,
                               api_key=api_key)
        try:
            client = await (connect(settings) if tls is None else _connect_with_tls(settings, tls))
        except RuntimeError as err:  # the SDK's "Failed client connect: …"
            raise TemporalUnreachable(settings.temporal_address, _connect_failure(err)) from err
        return cls(client, settings.task_queue)

    async def close(self) -> None:
        """Let go of the connection; call it before a short-lived script exits. Without it, the Temporal client's
        Rust threads can abort interpreter teardown ("PyGILState_Release", temporalio/sdk-python#300)."""
        del self.client  # dropped while the interpreter is whole, not during its teardown
        gc.collect()
        await asyncio.sleep(0.05)

    async def __aenter__(self) -> TransferClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    @property
    def address(self) -> str:
        return self.client.service_client.config.target_host

    async def submit(self, request: TransferRequest | Mapping[str, Any], deadlines: Deadlines | None = None,
                     policy_version: str | None = None, step_retry: StepRetry | None = None,
                     ) -> WorkflowHandle[Any, TransferStatus]:
        """Start the transfer; idempotent on its id: the same request again returns the existing handle, a
        different one raises TransferConflict. A mapping is validated first (TransferValidationError)."""
        return (await self.ensure_submitted(request, deadlines, policy_version, step_retry)).handle

    async def ensure_submitted(self, request: TransferRequest | Mapping[str, Any], deadlines: Deadlines | None = None,
                               policy_version: str | None = None, step_retry: StepRetry | None = None,
                               ) -> Submission:
        """`submit`, also telling whether this call started the workflow."""
        from workflows.transfer import TransferWorkflow, initial_search_attributes

        request = parse_request(request)
        workflow_input = TransferInput(request=request, deadlines=deadlines or Deadlines(),
                                       policy_version=policy_version, step_retry=step_retry or StepRetry())
        check_size("request", workflow_input)
        try:
            with self._translated(request.transfer_id):
                handle = await self.client.start_workflow(
                    TransferWorkflow.run, workflow_input,
                    id=request.transfer_id, task_queue=self.task_queue,
                    # FAIL (not USE_EXISTING) so a running duplicate is reported and compared below.
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                    search_attributes=initial_search_attributes(request),
                    static_summary=_summary(request),
                    static_details=request_details(request),
                )
            return Submission(handle, created=True)
        except WorkflowAlreadyStartedError:
            await self._require_same_request(request)
            return Submission(self.handle(request.transfer_id), created=False)

    def handle(self, transfer_id: str) -> WorkflowHandle[Any, TransferStatus]:
        return self.client.get_workflow_handle(transfer_id, result_type=TransferStatus)

    async def status(self, transfer_id: str) -> TransferStatus:
        with self._translated(transfer_id):
            return await self.handle(transfer_id).query("status", result_type=TransferStatus,
                                                        rpc_timeout=self.query_timeout)

    # Decisions. With a signer (here or on the client) each is signed over its fields and the context it is made in
    # (transfer, request version, stage); transfers require signed decisions unless their worker says otherwise.

    async def sign_off(self, transfer_id: str, decision: SignOff, signer: SignWith = None) -> TransferStatus:
        d = _decision(SignOff, decision)
        context = DecisionContext(transfer_id, d.request_digest, Stage.ALLY_SIGNOFF.value)
        return await self._update(transfer_id, "sign_off", self._signed(d, "sign_off", d.signer, signer, context))

    async def amend(self, transfer_id: str, amendment: Amendment, signer: SignWith = None) -> TransferStatus:
        d = _decision(Amendment, amendment)
        return await self._update(transfer_id, "amend", await self._sign_now(transfer_id, d, "amend", d.actor, signer))

    async def us_decision(self, transfer_id: str, decision: UsDecision, signer: SignWith = None) -> TransferStatus:
        d = _decision(UsDecision, decision)
        context = DecisionContext(transfer_id, d.request_digest, Stage.US_REVIEW.value)
        return await self._update(transfer_id, "us_decision",
                                  self._signed(d, "us_decision", d.reviewer, signer, context))

    async def emergency_waiver(self, transfer_id: str, waiver: EmergencyWaiver, signer: SignWith = None
                               ) -> TransferStatus:
        d = _decision(EmergencyWaiver, waiver)
        return await self._update(transfer_id, "emergency_waiver", await self._sign_now(
            transfer_id, d, "emergency_waiver", d.official, signer, Stage.CONGRESSIONAL_REVIEW))

    async def joint_resolution(self, transfer_id: str, resolution: JointResolution, signer: SignWith = None
                               ) -> TransferStatus:
        d = _decision(JointResolution, resolution)
        return await self._update(transfer_id, "joint_resolution", await self._sign_now(
            transfer_id, d, "joint_resolution", d.recorder, signer, Stage.CONGRESSIONAL_REVIEW))

    async def withdraw(self, transfer_id: str, withdrawal: Withdrawal, signer: SignWith = None) -> TransferStatus:
        d = _decision(Withdrawal, withdrawal)
        return await self._update(transfer_id, "withdraw",
                                  await self._sign_now(transfer_id, d, "withdraw", d.actor, signer))

    async def record_eeum_inventory(self, transfer_id: str, inventory: EeumInventory, signer: SignWith = None
                                    ) -> TransferStatus:
        d = _decision(EeumInventory, inventory)
        return await self._update(transfer_id, "record_eeum_inventory", await self._sign_now(
            transfer_id, d, "record_eeum_inventory", d.inspector, signer, Stage.BACKFILL))

    async def refresh_signers(self, transfer_id: str) -> TransferStatus:
        """Have the transfer load the signer registry again now (after a revocation), not at its next stage."""
        with self._translated(transfer_id):
            return await self.handle(transfer_id).execute_update("refresh_signers", result_type=TransferStatus,
                                                                 rpc_timeout=self.update_timeout)

    async def sign_ops_action(self, transfer_id: str, action: OpsAction, kind: str, signer: SignWith = None
                              ) -> OpsAction:
        """An operator's `ops_retry` or `ops_skip` signed for the step now stuck in the transfer or its shipment
        (the signature names that step and since when, so it cannot be replayed on a later stall)."""
        from tpt.messages import StuckStep

        d = _decision(OpsAction, action)
        for workflow_id, child_stage in ((transfer_id, None), (shipment_id(transfer_id), Stage.SHIPMENT)):
            try:
                with self._translated(transfer_id):
                    stuck = await self.client.get_workflow_handle(workflow_id).query(
                        "stuck_step", result_type=StuckStep, rpc_timeout=self.query_timeout)
            except TransferNotFound:
                continue
            if stuck is None:
                continue
            status = await self.status(transfer_id)
            stage = child_stage.value if child_stage else decision_stage(status.stage.value)
            context = DecisionContext(transfer_id, status.request_digest, stage, ops_subject(stuck.step, stuck.since))
            return self._signed(d, kind, d.operator, signer, context)
        raise DecisionRefused(transfer_id, "no step of this transfer is waiting for an operator")

    async def record_handover(self, transfer_id: str, handover: Handover) -> ShipmentStatus:
        return await self._child_update(transfer_id, shipment_id(transfer_id), "record_handover",
                                        _decision(Handover, handover),
                                        ShipmentStatus, Stage.SHIPMENT)

    async def record_backfill(self, transfer_id: str, record: BackfillRecord) -> BackfillStatus:
        return await self._child_update(transfer_id, backfill_id(transfer_id), "record_backfill",
                                        _decision(BackfillRecord, record),
                                        BackfillStatus, Stage.BACKFILL)

    async def watch(self, transfer_id: str, interval: float = 0.5) -> AsyncIterator[TransferStatus]:
        """The status now and again after every change, until the transfer ends (polls the status query)."""
        last: TransferStatus | None = None
        while True:
            status = await self.status(transfer_id)
            if status != last:
                last = status
                yield status
            if status.stage.is_terminal:
                return
            await asyncio.sleep(interval)

    async def history(self, transfer_id: str, store: AuditStore | str) -> builtins.list[AuditEvent]:
        """The transfer's audit events, oldest first, from an audit store or its database URL."""
        from tpt.audit.store import AuditStore

        if isinstance(store, str):
            async with AuditStore.open(store, 1, 1) as opened:
                return await self.history(transfer_id, opened)
        events = await store.history(transfer_id)
        if not events:
            raise TransferNotFound(transfer_id)
        return events

    async def list(self, *, stage: Stage | None = None, donor: str | None = None, recipient: str | None = None,
                   needs_attention: bool | None = None, limit: int = 100) -> builtins.list[TransferSummary]:
        """Transfers from Temporal visibility, newest first (eventually consistent: a few hundred ms behind)."""
        query = transfer_query(stage, donor, recipient, needs_attention)
        with self._translated("transfers"):
            return [summarize(e) async for e in self.client.list_workflows(query, limit=limit)]

    # --- internals ---------------------------------------------------------------------------------------

    def _signer_for(self, actor: str, signer: SignWith) -> Signer | None:
        chosen = signer if signer is not None else self.signer
        if isinstance(chosen, Keychain):
            return chosen.for_actor(actor)
        if chosen is not None and chosen.actor != actor:
            raise TransferValidationError([("signer", f"the key {chosen.key_id} is {chosen.actor}'s, but the decision "
                                                      f"is made by {actor}: sign with {actor}'s own key")])
        return chosen

    def _signed(self, decision: D, kind: str, actor: str, signer: SignWith, context: DecisionContext) -> D:
        """Signed with the actor's key, if there is one; a decision that arrives signed is sent as it is."""
        key = None if decision.signature is not None else self._signer_for(actor, signer)
        if key is None:
            return decision
        return decision.model_copy(update={"signature": key.sign(decision, kind, context)})

    async def _sign_now(self, transfer_id: str, decision: D, kind: str, actor: str, signer: SignWith,
                        stage: Stage | None = None) -> D:
        """Signed for the transfer's current request version (and stage, unless the decision has its own)."""
        if decision.signature is not None or self._signer_for(actor, signer) is None:
            return decision
        current = await self.status(transfer_id)
        context = DecisionContext(transfer_id, current.request_digest,
                                  stage.value if stage else decision_stage(current.stage.value))
        return self._signed(decision, kind, actor, signer, context)

    def _translated(self, transfer_id: str) -> AbstractContextManager[None]:
        return translated(transfer_id, self.address, self.task_queue)

    async def _update(self, transfer_id: str, name: str, message: object) -> TransferStatus:
        async def send() -> TransferStatus:
            with self._translated(transfer_id):
                return await self.handle(transfer_id).execute_update(name, message, result_type=TransferStatus,
                                                                     rpc_timeout=self.update_timeout)
        return await _again_while_busy(send)

    async def _child_update(self, transfer_id: str, workflow_id: str, name: str, message: object,
                            result_type: type[R], stage: Stage) -> R:
        """Handovers and backfill records go to child workflows, which exist only from their stage on; one that
        is just starting is waited for, briefly."""
        for _ in range(self.child_start_polls):
            try:
                async def send() -> R:
                    with self._translated(transfer_id):
                        return await self.client.get_workflow_handle(workflow_id).execute_update(
                            name, message, result_type=result_type, rpc_timeout=self.update_timeout)
                return await _again_while_busy(send)
            except TransferNotFound:
                current = (await self.status(transfer_id)).stage  # TransferNotFound again for an unknown transfer
                if current is not stage:
                    what = name.removeprefix("record_")  # handover, backfill
                    raise DecisionRefused(transfer_id, f"a {what} is accepted once the transfer reaches "
                                                       f"{stage.value}; it is in {current.value}") from None
                await asyncio.sleep(0.1)
        raise DecisionRefused(transfer_id, f"the {stage.value} workflow has not started; try again in a moment")

    async def _require_same_request(self, request: TransferRequest) -> None:
        """The id is taken: fine if by this request, as first submitted or as amended since."""
        tid, digest = request.transfer_id, request.digest()
        handle = self.handle(tid)
        with self._translated(tid):
            first = (await self._submitted_input(handle)).request.digest()
            current = first if digest == first else await self._current_digest(handle)
        if digest not in (first, current):
            raise TransferConflict(tid, current or first, digest)

    async def _current_digest(self, handle: WorkflowHandle[Any, TransferStatus]) -> str | None:
        state = (await handle.describe()).status
        if state is WorkflowExecutionStatus.RUNNING:
            return (await self.status(handle.id)).request_digest
        if state is WorkflowExecutionStatus.COMPLETED:  # every outcome completes with the final status
            return (await handle.result()).request_digest
        return None  # terminated or failed: only the input is known

    async def _submitted_input(self, handle: WorkflowHandle[Any, Any]) -> TransferInput:
        async for event in handle.fetch_history_events(page_size=1):  # the first event holds the input
            payloads = event.workflow_execution_started_event_attributes.input.payloads
            [started] = await self.client.data_converter.decode(payloads, [TransferInput])
            return started  # type: ignore[no-any-return]
        raise TransferNotFound(handle.id)


def _overridden(settings: Settings, **changes: str | None) -> Settings:
    names = {"address": "temporal_address", "namespace": "temporal_namespace", "task_queue": "task_queue",
             "api_key": "temporal_api_key"}
    update: dict[str, Any] = {names[k]: v for k, v in changes.items() if v is not None}
    if "temporal_api_key" in update:
        update["temporal_api_key"] = SecretStr(update["temporal_api_key"])
    return settings.model_copy(update=update)


async def _connect_with_tls(settings: Settings, tls: bool | TLSConfig) -> Client:
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    return await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace,
                                data_converter=converter_for(settings), tls=tls, api_key=api_key)


def _connect_failure(err: RuntimeError) -> str:
    # The SDK's message nests transport errors; the OS's own words are what a person can act on.
    found = re.search(r'message: "([^"]+)"', str(err))
    return found.group(1) if found else str(err)


def _summary(request: TransferRequest) -> str:
    return (f"{request.donor} → {request.recipient}: {len(request.items)} line item(s), "
            f"${request.total_value_usd:,.0f}")
