"""The transfer workflow: the stage machine of DESIGN.md §2, advanced by validated updates.

Deterministic orchestration only: reference data, audit appends and notifications are activities; policy is
pure code evaluated on workflow time. Shipment and backfill run as child workflows.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes

with workflow.unsafe.imports_passed_through():
    from activities.reference import load_reference_data
    from activities.signers import SignerActivities, SignerQuery
    from tpt import search_attributes as sa
    from tpt import telemetry
    from tpt.contract import TransferRequest
    from tpt.ids import backfill_id, shipment_id
    from tpt.messages import (
        Amendment,
        BackfillInput,
        EeumInventory,
        EmergencyWaiver,
        JointResolution,
        ReferenceData,
        ShipmentInput,
        Signature,
        SignOff,
        TransferInput,
        TransferStatus,
        UsDecision,
        UsOutcome,
        Withdrawal,
    )
    from tpt.policy import PolicyDecision, evaluate
    from tpt.signing import (
        CONGRESSIONAL_LIAISON,
        EEUM_INSPECTOR,
        REQUESTER,
        US,
        WAIVER_OFFICIAL,
        DecisionContext,
        Requirement,
        decision_stage,
    )
    from tpt.stages import Stage
    from workflows.audit_trail import AuditTrail
    from workflows.backfill import BackfillWorkflow
    from workflows.details import render
    from workflows.operations import Operable
    from workflows.refusal import refuse
    from workflows.shipment import DEFAULT_LEGS, LEG_DEPARTED_SIGNAL, ShipmentWorkflow
    from workflows.signatures import SIGNED_DECISIONS, SignedDecisions

ENGINE = "tpt-engine"


class _Restart(Exception):
    """The request was amended: sign-off starts again on the new version."""


class _Ended(Exception):
    def __init__(self, stage: Stage, reason: str):
        self.stage, self.reason = stage, reason


def initial_search_attributes(request: TransferRequest) -> TypedSearchAttributes:
    return TypedSearchAttributes([
        SearchAttributePair(sa.TRANSFER_STAGE, Stage.REQUESTED.value),
        SearchAttributePair(sa.DONOR_NATION, request.donor),
        SearchAttributePair(sa.RECIPIENT, request.recipient),
        SearchAttributePair(sa.USML_CATEGORIES, list(request.usml_categories)),
        SearchAttributePair(sa.TOTAL_VALUE_USD, float(request.total_value_usd)),
        SearchAttributePair(sa.PRIORITY, request.priority.value),
        SearchAttributePair(sa.NEEDS_ATTENTION, False),
        SearchAttributePair(sa.CONGRESSIONAL_REVIEW, "PENDING"),
    ])


@workflow.defn(name="TransferWorkflow")
class TransferWorkflow(Operable, SignedDecisions):
    @workflow.init
    def __init__(self, input: TransferInput) -> None:
        # Decided once, here: transfers started before signed decisions load no signer registry (no such activity
        # in their histories) and take their decisions unsigned, as they did then.
        self.signed = self.checks_signatures = workflow.patched(SIGNED_DECISIONS)
        self.signers = None
        self.signatures_required = False
        self.request = input.request
        self.deadlines = input.deadlines
        self.policy_version = input.policy_version
        self.step_retry = input.step_retry
        self.version = 1
        self.digest = self.request.digest()
        self.stage = Stage.REQUESTED
        self.stage_entered_at = workflow.now()
        self.ref: ReferenceData | None = None
        self.policy: PolicyDecision | None = None
        self.signatures: list[Signature] = []
        self.us: UsDecision | None = None
        self.framework_consent: str | None = None
        self.amended = False
        self.congress = "NOT_REQUIRED"
        self.congress_ends: datetime | None = None
        self.waiver: EmergencyWaiver | None = None
        self.resolution: JointResolution | None = None
        self.departed = False
        self.delivered_at: datetime | None = None
        self.inventory_due: datetime | None = None
        self.inventory_done = False
        self.backfill_replaced = 0
        self.withdrawal: Withdrawal | None = None
        self.attention: str | None = None
        self.outcome_reason: str | None = None
        self.trail = AuditTrail(self.request.transfer_id)
        self._inventory_watch: asyncio.Task[None] | None = None
        self.child_events = 0  # audit events the shipment and backfill workflows recorded

    # --- the stages --------------------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: TransferInput) -> TransferStatus:
        self.ref = await workflow.execute_local_activity(
            load_reference_data, self.request.donor, start_to_close_timeout=timedelta(seconds=30),
            summary=f"load signers, reviewers and frameworks for {self.request.donor}",
        )
        if self.signed:  # before anything is recorded: a sign-off may arrive at once
            await self._load_signers()
        self.policy = self._evaluate()
        await self._record("TRANSFER_REQUESTED", self.request.requested_by, "requester", self._request_summary())
        self._count(telemetry.TRANSFERS_STARTED, "transfers submitted")
        try:
            await self._authorize()
            await self._congressional_review()
            await self._shipment()
            await self._backfill()
            final, self.outcome_reason = Stage.COMPLETED, "backfill complete"
        except _Ended as ended:
            final, self.outcome_reason = ended.stage, ended.reason
        await self._enter(final, {"reason": self.outcome_reason})
        self._count(telemetry.TRANSFERS_FINISHED, "transfers ended, by outcome", outcome=final.value)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.status()

    async def _authorize(self) -> None:
        """Ally sign-off then U.S. review, again from sign-off whenever the request is amended."""
        while True:
            try:
                await self._ally_signoff()
                await self._us_review()
                return
            except _Restart:
                self.amended = False

    async def _ally_signoff(self) -> None:
        await self._enter(Stage.ALLY_SIGNOFF)
        settled = lambda: self._vetoed() or self._quorum_met() or self._interrupted()  # noqa: E731
        if not await self._wait(settled, self.deadlines.signoff_reminder, "sign-off reminder"):
            await self._record("SIGNOFF_REMINDER", ENGINE, "system", {"awaiting": self._awaiting()})
            rest = self.deadlines.signoff_expiry - self.deadlines.signoff_reminder
            if not await self._wait(settled, rest, "sign-off expiry"):
                raise _Ended(Stage.EXPIRED, f"sign-off not complete within {self.deadlines.signoff_expiry}")
        self._check_interruptions()
        if self._vetoed():
            veto = next(s for s in self.signatures if not s.approve)
            raise _Ended(Stage.REJECTED, f"vetoed by {veto.signer} ({veto.role}): {veto.comment}")

    async def _us_review(self) -> None:
        await self._enter(Stage.US_REVIEW)
        assert self.policy is not None
        if self.policy.fast_track:
            self.framework_consent = self.policy.framework_id
            await self._record("US_CONSENT_BY_FRAMEWORK", f"framework:{self.policy.framework_id}", "FRAMEWORK",
                               {"framework_id": self.policy.framework_id, "notes": self.policy.framework_notes})
            return
        decided = lambda: self.us is not None or self._interrupted()  # noqa: E731
        if not await self._wait(decided, self.deadlines.us_review_reminder, "U.S. review reminder"):
            await self._record("US_REVIEW_REMINDER", ENGINE, "system", {"awaiting": self._awaiting()})
            await workflow.wait_condition(decided)
        self._check_interruptions()
        assert self.us is not None
        if self.us.outcome is UsOutcome.DENY:
            raise _Ended(Stage.DENIED, f"denied by {self.us.reviewer} ({self.us.office}): {self.us.comment}")
        if self.us.outcome is UsOutcome.RETURN:
            await workflow.wait_condition(self._interrupted)
            self._check_interruptions()

    async def _congressional_review(self) -> None:
        assert self.policy is not None
        if not self.policy.notification_required:
            await self._set_congress("NOT_REQUIRED")
            return
        await self._enter(Stage.CONGRESSIONAL_REVIEW)
        period = self.deadlines.calendar_day * (self.policy.review_days or 30)
        self.congress_ends = self.stage_entered_at + period
        await self._set_congress("RUNNING")
        ended = lambda: self.waiver is not None or self.resolution is not None or self.withdrawal is not None  # noqa: E731
        remaining = self.congress_ends - workflow.now()
        if not await self._wait(ended, remaining, f"congressional review ({self.policy.review_days} days)"):
            await self._set_congress("ELAPSED")
            await self._record("CONGRESSIONAL_REVIEW_ELAPSED", ENGINE, "system", {"days": self.policy.review_days})
            return
        self._check_interruptions()
        if self.resolution is not None:
            await self._set_congress("BLOCKED")
            raise _Ended(Stage.BLOCKED, f"joint resolution {self.resolution.citation}")
        await self._set_congress("WAIVED")

    async def _shipment(self) -> None:
        await self._enter(Stage.SHIPMENT)
        assert self.policy is not None
        child = await workflow.start_child_workflow(
            ShipmentWorkflow.run,
            ShipmentInput(transfer_id=self.request.transfer_id, donor=self.request.donor,
                          recipient=self.request.recipient, legs=DEFAULT_LEGS,
                          first_custodian=f"{self.request.donor} depot", eeum_serials=self._eeum_serials(),
                          request_digest=self.digest, policy_version=self.policy.policy_version,
                          step_retry=self.step_retry, signers=self.signers),
            id=shipment_id(self.request.transfer_id),
            static_summary=f"shipment {self.request.donor} → hub → {self.request.recipient} unit",
        )
        await workflow.wait_condition(lambda: child.done() or (self.withdrawal is not None and not self.departed))
        if not child.done():
            child.cancel()
            self._check_interruptions()
        shipped = await child
        self.delivered_at, self.child_events = shipped.delivered_at, self.child_events + shipped.audit_events
        if self.policy.eeum_inventory_days and self.delivered_at:
            self.inventory_due = self.delivered_at + self.deadlines.calendar_day * self.policy.eeum_inventory_days
            self._inventory_watch = asyncio.create_task(self._watch_inventory())

    async def _backfill(self) -> None:
        await self._enter(Stage.BACKFILL)
        assert self.policy is not None
        result = await workflow.execute_child_workflow(
            BackfillWorkflow.run,
            BackfillInput(transfer_id=self.request.transfer_id, donor=self.request.donor,
                          quantity_required=self._quantity(), request_digest=self.digest,
                          policy_version=self.policy.policy_version, reminder=self.deadlines.backfill_reminder),
            id=backfill_id(self.request.transfer_id),
            static_summary=f"backfill of {self._quantity()} units to {self.request.donor}",
        )
        self.backfill_replaced, self.child_events = result.replaced, self.child_events + result.audit_events
        if self.inventory_due is not None:
            await workflow.wait_condition(lambda: self.inventory_done)

    async def _watch_inventory(self) -> None:
        assert self.inventory_due is not None
        if not await self._wait(lambda: self.inventory_done, self.inventory_due - workflow.now(),
                                "EEUM initial inventory due"):
            await self._flag(f"EEUM initial inventory overdue since {self.inventory_due:%Y-%m-%d}")

    # --- updates: ally sign-off ---------------------------------------------------------------------------

    @workflow.update
    async def sign_off(self, decision: SignOff) -> TransferStatus:
        # A sign-off sent right after submission may arrive before the registry is loaded: check it then.
        await workflow.wait_condition(lambda: self.stage is not Stage.REQUESTED)
        self._check_sign_off(decision)
        self.signatures.append(Signature(signer=decision.signer, role=decision.role, approve=decision.approve,
                                         at=workflow.now(), comment=decision.comment))
        await self._record("SIGN_OFF", decision.signer, decision.role, self._signed_payload(decision))
        return self.status()

    @sign_off.validator
    def _validate_sign_off(self, decision: SignOff) -> None:
        if self.stage is Stage.REQUESTED:
            self._check_signer_nation(decision)
            if self.signers is not None:  # otherwise the handler checks it once the registry is loaded
                self._check_sign_off_signature(decision)
            return
        self._check_sign_off(decision)

    def _check_sign_off_signature(self, d: SignOff) -> None:
        self._check_signed("sign_off", d, Requirement(d.signer, d.role, d.nation), stage=Stage.ALLY_SIGNOFF.value)

    def _check_sign_off(self, d: SignOff) -> None:
        self._require_stage(Stage.ALLY_SIGNOFF, "sign-off")
        self._check_signer_nation(d)
        assert self.ref is not None
        if d.signer == self.request.requested_by:
            raise refuse(f"{d.signer} requested this transfer and cannot sign it off (separation of duties)")
        seat = self.ref.registry.signoff.seat_of(d.signer)
        if seat != d.role:
            raise refuse(f"{d.signer} holds no {d.role} seat for {d.nation}; seats: "
                         f"{ {r: p for r, p in self.ref.registry.signoff.seats.items()} }")
        earlier = next((s for s in self.signatures if s.signer == d.signer or s.role == d.role), None)
        if earlier:
            raise refuse(f"{earlier.role} has already signed (by {earlier.signer}); one vote per signer and seat")
        self._check_digest(d.request_digest, "signed")
        self._check_sign_off_signature(d)

    def _check_signer_nation(self, d: SignOff) -> None:
        if d.nation != self.request.donor:
            raise refuse(f"signer nation {d.nation} is not the donor {self.request.donor}; "
                         "only the donor's own authorities sign off")

    # --- updates: amendment and withdrawal ----------------------------------------------------------------

    @workflow.update
    async def amend(self, amendment: Amendment) -> TransferStatus:
        # Like a sign-off, an amendment sent right after submission waits for the request to be recorded.
        await workflow.wait_condition(lambda: self.stage is not Stage.REQUESTED)
        self._validate_amend(amendment)
        signature = self._signature_fields(amendment)
        voided = len(self.signatures)
        self.request, self.version = amendment.request, self.version + 1
        self.digest, self.signatures, self.us, self.amended = self.request.digest(), [], None, True
        self.policy = self._evaluate()
        workflow.upsert_search_attributes([
            sa.TOTAL_VALUE_USD.value_set(float(self.request.total_value_usd)),
            sa.USML_CATEGORIES.value_set(list(self.request.usml_categories)),
            sa.PRIORITY.value_set(self.request.priority.value),
        ])
        await self._record("REQUEST_AMENDED", amendment.actor, "requester",
                           {"reason": amendment.reason, "version": self.version, "signoffs_voided": voided,
                            **self._request_summary(), **signature})
        return self.status()

    @amend.validator
    def _validate_amend(self, amendment: Amendment) -> None:
        if self.stage not in (Stage.REQUESTED, Stage.ALLY_SIGNOFF, Stage.US_REVIEW) or self.framework_consent:
            raise refuse(f"amendments are accepted before U.S. consent only; transfer is in {self.stage.value}")
        if self.us is not None and self.us.outcome is UsOutcome.APPROVE:
            raise refuse("the United States has consented to this version; amendments are closed")
        if amendment.actor != self.request.requested_by:
            raise refuse(f"only the requester {self.request.requested_by} may amend the request")
        new = amendment.request
        if (new.transfer_id, new.donor) != (self.request.transfer_id, self.request.donor):
            raise refuse("an amendment keeps the transfer id and the donor; submit a new transfer instead")
        if new.digest() == self.digest:
            raise refuse("the amended request is identical to the current version")
        self._check_signed("amend", amendment, Requirement(amendment.actor, REQUESTER, self.request.donor))

    @workflow.update
    async def withdraw(self, withdrawal: Withdrawal) -> TransferStatus:
        self.withdrawal = withdrawal
        await self._record("WITHDRAWAL", withdrawal.actor, "requester", self._signed_payload(withdrawal))
        return self.status()

    @withdraw.validator
    def _validate_withdraw(self, withdrawal: Withdrawal) -> None:
        if self.stage.is_terminal or self.withdrawal is not None:
            raise refuse(f"transfer is already {self.stage.value}")
        if self.departed or self.stage is Stage.BACKFILL:
            raise refuse("a shipment leg has left: shipment is irreversible, withdrawal refused")
        if withdrawal.actor != self.request.requested_by:
            raise refuse(f"only the requester {self.request.requested_by} may withdraw the request")
        self._check_signed("withdraw", withdrawal, Requirement(withdrawal.actor, REQUESTER, self.request.donor))

    # --- updates: United States -----------------------------------------------------------------------

    @workflow.update
    async def us_decision(self, decision: UsDecision) -> TransferStatus:
        self.us = decision
        await self._record("US_DECISION", decision.reviewer, decision.office, self._signed_payload(decision))
        return self.status()

    @us_decision.validator
    def _validate_us_decision(self, decision: UsDecision) -> None:
        d = decision
        self._require_stage(Stage.US_REVIEW, "a U.S. decision")
        assert self.policy is not None and self.ref is not None
        if self.framework_consent or self.us is not None:
            raise refuse("this version already has its U.S. decision"
                         + ("; awaiting the requester's amendment" if self.us and self.us.outcome is UsOutcome.RETURN
                            else ""))
        route = self.policy.route.value
        if d.office != route:
            raise refuse(f"this transfer is routed to {route}, not {d.office}")
        if d.reviewer not in self.ref.registry.reviewers.get(route, []):
            raise refuse(f"{d.reviewer} is not a reviewer of {route}")
        self._check_digest(d.request_digest, "reviewed")
        self._check_signed("us_decision", d, Requirement(d.reviewer, d.office, US), stage=Stage.US_REVIEW.value)

    @workflow.update
    async def emergency_waiver(self, waiver: EmergencyWaiver) -> TransferStatus:
        self.waiver = waiver
        await self._record("EMERGENCY_WAIVER", waiver.official, WAIVER_OFFICIAL, self._signed_payload(waiver))
        return self.status()

    @emergency_waiver.validator
    def _validate_waiver(self, waiver: EmergencyWaiver) -> None:
        self._require_stage(Stage.CONGRESSIONAL_REVIEW, "an emergency waiver")
        assert self.ref is not None
        if waiver.official not in self.ref.registry.waiver_officials:
            raise refuse(f"{waiver.official} may not certify an emergency; officials: "
                         f"{self.ref.registry.waiver_officials}")
        if self.waiver or self.resolution:
            raise refuse("the congressional review has already ended")
        self._check_signed("emergency_waiver", waiver, Requirement(waiver.official, WAIVER_OFFICIAL, US),
                           stage=Stage.CONGRESSIONAL_REVIEW.value)

    @workflow.update
    async def joint_resolution(self, resolution: JointResolution) -> TransferStatus:
        self.resolution = resolution
        await self._record("JOINT_RESOLUTION", resolution.recorder, CONGRESSIONAL_LIAISON,
                           self._signed_payload(resolution))
        return self.status()

    @joint_resolution.validator
    def _validate_resolution(self, resolution: JointResolution) -> None:
        self._require_stage(Stage.CONGRESSIONAL_REVIEW, "a joint resolution")
        assert self.ref is not None
        if resolution.recorder not in self.ref.registry.congressional_recorders:
            raise refuse(f"{resolution.recorder} may not record congressional action")
        if self.waiver or self.resolution:
            raise refuse("the congressional review has already ended")
        self._check_signed("joint_resolution", resolution, Requirement(resolution.recorder, CONGRESSIONAL_LIAISON, US),
                           stage=Stage.CONGRESSIONAL_REVIEW.value)

    # --- shipment and inventory -------------------------------------------------------------------------

    @workflow.signal(name=LEG_DEPARTED_SIGNAL)
    def shipment_departed(self) -> None:
        self.departed = True

    @workflow.update
    async def record_eeum_inventory(self, inventory: EeumInventory) -> TransferStatus:
        self.inventory_done = True
        await self._record("EEUM_INVENTORY", inventory.inspector, EEUM_INSPECTOR, self._signed_payload(inventory))
        if self.attention:
            await self._clear_flag()
        return self.status()

    @record_eeum_inventory.validator
    def _validate_inventory(self, inventory: EeumInventory) -> None:
        if self.inventory_due is None or self.inventory_done:
            raise refuse("no EEUM initial inventory is due for this transfer now")
        expected, given = set(self._eeum_serials()), set(inventory.serials)
        if expected != given:
            raise refuse(f"inventory serials differ from the shipment: missing {sorted(expected - given)}, "
                         f"unexpected {sorted(given - expected)}")
        self._check_signed("record_eeum_inventory", inventory, Requirement(inventory.inspector, EEUM_INSPECTOR, US),
                           stage=Stage.BACKFILL.value)

    # --- signer registry -----------------------------------------------------------------------------------

    @workflow.update
    async def refresh_signers(self) -> TransferStatus:
        """Load the signer registry again now (e.g. after a revocation), not only when the next stage starts."""
        await self._load_signers()
        return self.status()

    @refresh_signers.validator
    def _validate_refresh_signers(self) -> None:
        if not self.signed:
            raise refuse("this transfer started before signed decisions: it has no signer registry to refresh")
        if self.stage.is_terminal:
            raise refuse(f"transfer is already {self.stage.value}")

    async def _load_signers(self) -> None:
        self.signers = await workflow.execute_local_activity_method(
            SignerActivities.load_signer_registry, SignerQuery(nations=[self.request.donor, US]),
            start_to_close_timeout=timedelta(seconds=30), summary=f"load the signer registry for {self.request.donor}",
        )
        self.signatures_required = self.signatures_required or self.signers.policy.decisions

    def _signing_context(self, stage: str | None = None, subject: str = "") -> DecisionContext:
        return DecisionContext(self.request.transfer_id, self.digest, stage or decision_stage(self.stage.value),
                               subject)

    # --- status ------------------------------------------------------------------------------------------

    @workflow.query
    def status(self) -> TransferStatus:
        return TransferStatus(
            transfer_id=self.request.transfer_id, stage=self.stage, stage_entered_at=self.stage_entered_at,
            donor=self.request.donor, recipient=self.request.recipient, request_version=self.version,
            request_digest=self.digest, policy=self.policy,
            quorum=self.ref.registry.signoff.quorum if self.ref else 0, signatures=list(self.signatures),
            awaiting=self._awaiting(), us_decision=self.us, consent_by_framework=self.framework_consent,
            congressional_review=self.congress, congressional_review_ends=self.congress_ends,
            shipment_departed=self.departed, delivered_at=self.delivered_at,
            eeum_inventory_due=self.inventory_due, eeum_inventory_done=self.inventory_done,
            backfill_replaced=self.backfill_replaced, backfill_required=self._quantity(),
            needs_attention=self.attention is not None, blocked_reason=self.attention,
            outcome_reason=self.outcome_reason, audit_events=self.trail.count + self.child_events,
            signatures_required=self.signatures_required,
            signers_loaded_at=self.signers.loaded_at if self.signers else None,
        )

    def _awaiting(self) -> list[str]:
        if self.stage is Stage.ALLY_SIGNOFF and self.ref:
            signed = {s.role for s in self.signatures}
            seats = self.ref.registry.signoff.seats
            need = self.ref.registry.signoff.quorum - len(signed)
            open_seats = [f"{r} ({', '.join(p)})" for r, p in seats.items() if r not in signed]
            return [f"{need} more sign-off(s) of {self.request.donor}: " + "; ".join(open_seats)]
        if self.stage is Stage.US_REVIEW and self.policy:
            if self.us and self.us.outcome is UsOutcome.RETURN:
                return [f"amendment by {self.request.requested_by} (returned by {self.us.reviewer})"]
            if self.policy.fast_track:
                return [f"automatic consent under framework {self.policy.framework_id}"]
            return [f"U.S. decision by {self.policy.route.value}"]
        if self.stage is Stage.CONGRESSIONAL_REVIEW and self.congress_ends:
            return [f"end of congressional review {self.congress_ends:%Y-%m-%d %H:%M} UTC (or emergency waiver)"]
        if self.stage is Stage.SHIPMENT:
            return ["custody handovers along the shipment legs"]
        if self.stage is Stage.BACKFILL:
            return [f"backfill of {self._quantity()} units to {self.request.donor}"]
        return []

    # --- internals ---------------------------------------------------------------------------------------

    def _evaluate(self) -> PolicyDecision:
        assert self.ref is not None
        return evaluate(self.request, at=workflow.now(), frameworks=self.ref.frameworks, version=self.policy_version)

    def _quorum_met(self) -> bool:
        assert self.ref is not None
        return sum(1 for s in self.signatures if s.approve) >= self.ref.registry.signoff.quorum

    def _vetoed(self) -> bool:
        return any(not s.approve for s in self.signatures)

    def _interrupted(self) -> bool:
        return self.amended or self.withdrawal is not None

    def _check_interruptions(self) -> None:
        if self.withdrawal is not None:
            raise _Ended(Stage.WITHDRAWN, f"withdrawn by {self.withdrawal.actor}: {self.withdrawal.reason}")
        if self.amended:
            raise _Restart()

    def _check_digest(self, digest: str, verb: str) -> None:
        if digest != self.digest:
            raise refuse(f"{verb} request digest {digest[:12]}… but the current version (v{self.version}) is "
                         f"{self.digest[:12]}…; read the current request and decide again")

    def _require_stage(self, stage: Stage, what: str) -> None:
        if self.stage is not stage:
            raise refuse(f"{what} is accepted only in {stage.value}; transfer is in {self.stage.value}")

    def _eeum_serials(self) -> list[str]:
        return [serial for item in self.request.items if item.eeum for serial in item.serials]

    def _quantity(self) -> int:
        return sum(item.quantity for item in self.request.items)

    def _request_summary(self) -> dict[str, Any]:
        r, p = self.request, self.policy
        assert p is not None
        return {"donor": r.donor, "recipient": r.recipient, "total_value_usd": str(r.total_value_usd),
                "priority": r.priority.value, "route": p.route.value, "items": len(r.items),
                "policy": p.model_dump(mode="json")}

    async def _wait(self, condition: Any, within: timedelta, summary: str) -> bool:
        """Wait for a condition; False when the deadline passed first."""
        try:
            await workflow.wait_condition(condition, timeout=max(within, timedelta(0)), timeout_summary=summary)
            return True
        except TimeoutError:
            return False

    async def _enter(self, stage: Stage, payload: dict[str, Any] | None = None) -> None:
        spent = (workflow.now() - self.stage_entered_at).total_seconds()
        previous, self.stage, self.stage_entered_at = self.stage, stage, workflow.now()
        workflow.metric_meter().create_histogram_float(
            telemetry.STAGE_DURATION, "time a transfer spent in a stage", "s"
        ).record(spent, {"stage": previous.value})
        workflow.logger.info("stage entered: %s → %s", previous.value, stage.value)
        attributes = [sa.TRANSFER_STAGE.value_set(stage.value)]
        if self.policy:
            attributes.append(sa.APPROVAL_ROUTE.value_set(self.policy.route.value))
        workflow.upsert_search_attributes(attributes)
        if self.signed and not stage.is_terminal and previous is not Stage.REQUESTED:
            await self._load_signers()  # the keys this stage's decisions are checked against (loaded at start)
        await self._record("STAGE_ENTERED", ENGINE, "system", {"from": previous.value, "to": stage.value,
                                                               **(payload or {})})

    async def _set_congress(self, state: str) -> None:
        self.congress = state
        workflow.upsert_search_attributes([sa.CONGRESSIONAL_REVIEW.value_set(state)])
        self._show()

    async def _record(self, event_type: str, actor: str, role: str, payload: dict[str, Any]) -> None:
        await self.trail.record(event_type, self.stage, actor, role, payload, request_digest=self.digest,
                                policy_version=self.policy.policy_version if self.policy else None)
        self._show()

    def _count(self, name: str, description: str, **labels: str) -> None:
        workflow.metric_meter().create_counter(name, description).add(1, {"donor": self.request.donor, **labels})

    def _show(self) -> None:
        workflow.set_current_details(render(self.status()))
