"""Checking signed decisions in workflow code (validators: synchronous, deterministic, no I/O).

The keys come from a `SignerSnapshot` in workflow state, loaded by the `load_signer_registry` activity when a stage
starts or on a `refresh_signers` update (patch `signed-decisions`; histories from before it load nothing, and
their decisions are checked as they were then).
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from tpt.messages import OpsAction, StuckStep, _Decision
    from tpt.signing import (
        OPERATOR,
        DecisionContext,
        Requirement,
        SignatureRefused,
        SignerSnapshot,
        body_digest,
        ops_subject,
    )
    from workflows.refusal import refuse

SIGNED_DECISIONS = "signed-decisions"


class SignedDecisions:
    """Mixin: the snapshot, and the checks each decision's validator calls."""

    signers: SignerSnapshot | None = None
    signatures_required = False  # latched: once a snapshot required signatures, this transfer always does
    checks_signatures = True  # False for a transfer started before signed decisions: it has no registry

    def _signing_context(self, stage: str | None = None, subject: str = "") -> DecisionContext:
        raise NotImplementedError

    def _check_signed(self, kind: str, decision: _Decision, who: Requirement, *, stage: str | None = None,
                      subject: str = "") -> None:
        """Refuse a decision whose signature is missing (when required) or does not hold; None when it is fine."""
        if not self.checks_signatures:
            return  # decided as then; a signature it carries is not recorded (nothing to verify it against)
        signature = decision.signature
        if signature is None:
            if self.signatures_required:
                raise refuse(f"the {kind} decision of {who.actor} is not signed, and this transfer requires signed "
                             "decisions: sign it with your key (`--key FILE` or TPT_SIGNING_KEY on the command line, "
                             "`signer=` in the SDK)")
            return
        if self.signers is None:
            raise refuse("the signer registry is not loaded yet: send the decision again in a moment")
        try:
            self.signers.check(signature, kind=kind, context=self._signing_context(stage, subject),
                               body=body_digest(decision), who=who, now=workflow.now())
        except SignatureRefused as err:
            raise refuse(f"signature refused: {err}") from None

    def _check_operator(self, action: OpsAction, kind: str, stuck: StuckStep) -> None:
        """An operator is a registered one (the audit history names no unknown actor); their signature is checked
        when given, and required when the registry's policy says so."""
        snapshot = self.signers
        if snapshot is None:
            return  # started before the signer registry: operators are named as they were then
        who = Requirement(action.operator, OPERATOR, None)
        if action.signature is None:
            if snapshot.policy.operators:
                raise refuse(f"the {kind} of {action.operator} is not signed, and operators' actions must be: sign "
                             "it with your operator key")
            if snapshot.active_key(action.operator, OPERATOR, workflow.now()) is None:
                raise refuse(f"{action.operator} is not a registered operator: an administrator registers "
                             "operators with `tpt keys add --role operator`")
            return
        self._check_signed(kind, action, who, subject=ops_subject(stuck.step, stuck.since))

    def _signature_fields(self, decision: _Decision) -> dict[str, Any]:
        """What the audit event keeps of a signature: the signature and the public key that verifies it."""
        signature = decision.signature
        if signature is None or self.signers is None:
            return {}
        key = self.signers.key(signature.key_id)
        return {"signature": signature.model_dump(mode="json"),
                "signature_key": key.public_record() if key else None}

    def _signed_payload(self, decision: _Decision) -> dict[str, Any]:
        """The decision's fields for its audit event, with its signature when it has one."""
        return decision.model_dump(mode="json", exclude={"signature"}) | self._signature_fields(decision)


def check_operator(workflow_object: object, action: OpsAction, kind: str, stuck: StuckStep) -> None:
    """For operations.py's validators: any operable workflow, signed-decision aware or not."""
    if isinstance(workflow_object, SignedDecisions):
        workflow_object._check_operator(action, kind, stuck)


def operator_signature(workflow_object: object, action: OpsAction) -> dict[str, Any]:
    """For operations.py's handlers: the signature fields of an operator's action for its audit event."""
    if isinstance(workflow_object, SignedDecisions):
        return workflow_object._signature_fields(action)
    return {}
