"""Signed decisions: Ed25519 keys, the canonical digest a decision's signature covers, and the signer registry.

A person's decision (a sign-off, a U.S. decision, an operator's retry…) carries a `DecisionSignature`: the
signer's key id and the context the decision was made in (transfer, request version, stage, decision kind, what
it is about) plus the digest of the decision's own fields, all signed together. The workflow checks it against a
snapshot of the signer registry (`SignerSnapshot`, loaded by an activity when a stage starts: validators are
synchronous) and refuses a missing, forged, revoked, expired or wrong-role signature, and one made over another
transfer, request version, stage or decision. The audit event keeps the signature and the public key, so an
exported bundle verifies offline (tpt/audit/bundle.py).

Pure code: no I/O except the key files, no clock except where a caller passes none. The Postgres side of the
registry is tpt/keys/store.py.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from tpt.canonical import canonical_json, digest

ENVELOPE_FORMAT = "tpt-signed-decision/1"
KEY_FILE_FORMAT = "tpt-signing-key"
KEY_FILE_VERSION = 1
CLOCK_SKEW = timedelta(minutes=5)  # a signature may be dated this far after the workflow's clock, no further

# Roles of the parties who are not donor seats or U.S. offices (those sign with their seat, e.g. MOD, or office,
# e.g. PM_RSAT). The same names are the `role` of their audit events.
REQUESTER = "requester"
WAIVER_OFFICIAL = "waiver_official"
CONGRESSIONAL_LIAISON = "congressional_liaison"
EEUM_INSPECTOR = "eeum_inspector"
OPERATOR = "operator"
US = "US"

# Which audit event records which decision kind (the update's name), for offline verification.
EVENT_DECISIONS = {
    "SIGN_OFF": "sign_off", "US_DECISION": "us_decision", "EMERGENCY_WAIVER": "emergency_waiver",
    "JOINT_RESOLUTION": "joint_resolution", "WITHDRAWAL": "withdraw", "REQUEST_AMENDED": "amend",
    "EEUM_INVENTORY": "record_eeum_inventory", "OPS_RETRY": "ops_retry", "OPS_SKIP": "ops_skip",
}

_B64_KEY = r"^[A-Za-z0-9+/]{43}=$"  # 32 raw bytes
_B64_SIGNATURE = r"^[A-Za-z0-9+/]{86}==$"  # 64 raw bytes
_KEY_ID = r"^[0-9a-f]{16}$"
_DIGEST = r"^[0-9a-f]{64}$"


class SignatureRefused(ValueError):
    """A signature the workflow must not accept; the message says why and what to do."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


# --- the signature a decision carries --------------------------------------------------------------------

class DecisionSignature(_Frozen):
    """What was signed (every field but `signature`) and the Ed25519 signature over its canonical digest."""

    key_id: str = Field(pattern=_KEY_ID)
    signer: str = Field(min_length=1, max_length=200)
    signed_at: AwareDatetime
    transfer_id: str = Field(min_length=1, max_length=200)
    request_digest: str = Field(pattern=_DIGEST, description="the request version the signer decided on")
    stage: str = Field(min_length=1, max_length=40, description="the stage the decision is for")
    decision: str = Field(min_length=1, max_length=40, description="the decision kind, e.g. sign_off")
    subject: str = Field("", max_length=400, description="what else it is bound to, e.g. an operator's stuck step")
    body_digest: str = Field(pattern=_DIGEST, description="digest of the decision's own fields")
    signature: str = Field(pattern=_B64_SIGNATURE)

    @field_validator("signed_at")
    @classmethod
    def _signed_utc(cls, value: datetime) -> datetime:
        return _utc(value)

    def envelope(self) -> dict[str, Any]:
        """The signed statement, in canonical form (signed_at as an aware datetime: canonical encoding spells it)."""
        return {"format": ENVELOPE_FORMAT, "key_id": self.key_id, "signer": self.signer,
                "signed_at": self.signed_at, "transfer_id": self.transfer_id,
                "request_digest": self.request_digest, "stage": self.stage, "decision": self.decision,
                "subject": self.subject, "body_digest": self.body_digest}

    def message(self) -> bytes:
        """The bytes the key signs: the SHA-256 of the canonical envelope."""
        return hashlib.sha256(canonical_json(self.envelope())).digest()


class Signed(Protocol):
    """A decision model: its fields (without the signature) and the signature it carries."""

    @property
    def signature(self) -> DecisionSignature | None: ...

    def signed_body(self) -> dict[str, Any]: ...


def body_digest(decision: Signed | Mapping[str, Any]) -> str:
    body = decision if isinstance(decision, Mapping) else decision.signed_body()
    return digest(dict(body))


@dataclass(frozen=True)
class DecisionContext:
    """Where a decision is made: the workflow knows these, and so must the signer."""

    transfer_id: str
    request_digest: str
    stage: str
    subject: str = ""


def decision_stage(current: str) -> str:
    """The stage a decision taken now is signed for: REQUESTED lasts until the request is recorded, a moment, and
    whatever is decided then is taken in ALLY_SIGNOFF."""
    return "ALLY_SIGNOFF" if str(current) == "REQUESTED" else str(current)


def ops_subject(step: str, since: datetime) -> str:
    """What an operator's retry or skip is about: one stuck step, since when (a later stall is another subject)."""
    return f"stuck step '{step}' since {_utc(since).isoformat()}"


# --- keys ------------------------------------------------------------------------------------------------

def key_id_of(public_raw: bytes) -> str:
    """A key's id: the first 16 hex digits of the SHA-256 of its raw public key (a fingerprint)."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, size: int, what: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ValueError(f"{what} is not base64") from err
    if len(raw) != size:
        raise ValueError(f"{what} must be {size} bytes, got {len(raw)}")
    return raw


def public_key_from_b64(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(_unb64(text, 32, "public key"))


def verifies(public_key: str, signature: DecisionSignature) -> bool:
    """Whether the Ed25519 signature is the key's over the signature's canonical envelope."""
    try:
        public_key_from_b64(public_key).verify(base64.b64decode(signature.signature), signature.message())
    except (InvalidSignature, ValueError):
        return False
    return True


def _prepare_invalid_signature_error() -> None:
    """Have cryptography's Rust core look up its InvalidSignature exception once, here, outside any workflow.

    It imports that class lazily, the first time a signature fails to verify; inside Temporal's workflow sandbox
    (whose `sys.modules` is not a real dict) that import fails and the extension panics, aborting the worker. Done
    once at import of this module, the class is cached and a forged signature in a validator is a plain refusal."""
    from temporalio import workflow

    if workflow.unsafe.in_sandbox():
        return
    key = Ed25519PrivateKey.from_private_bytes(bytes(32)).public_key()
    try:
        key.verify(bytes(64), b"")
    except InvalidSignature:
        pass


_prepare_invalid_signature_error()


class KeyFileError(ValueError):
    """A key file that cannot be used; the message names the file and what to do."""


class Signer:
    """One person's private key, their actor id and the key's id: signs decisions as that actor."""

    def __init__(self, private_key: Ed25519PrivateKey, actor: str):
        if not actor:
            raise ValueError("a signer needs an actor id")
        self.private_key, self.actor = private_key, actor
        self.public_raw = private_key.public_key().public_bytes_raw()
        self.key_id = key_id_of(self.public_raw)

    def __repr__(self) -> str:
        return f"Signer(actor={self.actor!r}, key_id={self.key_id!r})"

    @classmethod
    def generate(cls, actor: str) -> Signer:
        return cls(Ed25519PrivateKey.generate(), actor)

    @property
    def public_key(self) -> str:
        """The raw public key, base64: what `tpt keys add` registers."""
        return _b64(self.public_raw)

    def sign(self, decision: Signed | Mapping[str, Any], kind: str, context: DecisionContext,
             at: datetime | None = None) -> DecisionSignature:
        """The signature of `decision` (a decision model, or the body it signs) as `kind` in `context`."""
        unsigned = DecisionSignature.model_construct(
            key_id=self.key_id, signer=self.actor, signed_at=_utc(at or datetime.now(UTC)),
            transfer_id=context.transfer_id, request_digest=context.request_digest, stage=str(context.stage),
            decision=kind, subject=context.subject, body_digest=body_digest(decision), signature="",
        )
        signature = _b64(self.private_key.sign(unsigned.message()))
        return DecisionSignature.model_validate(unsigned.model_dump() | {"signature": signature})

    # key files: JSON, owner-only, holding the actor, the key id and the raw keys in base64

    def save(self, path: Path) -> Path:
        """Write the key file (mode 0600; refuses to overwrite one)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        content = json.dumps({
            "format": KEY_FILE_FORMAT, "version": KEY_FILE_VERSION, "actor": self.actor, "key_id": self.key_id,
            "public_key": self.public_key, "private_key": _b64(self.private_key.private_bytes_raw()),
        }, indent=2) + "\n"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(content)
        return path

    @classmethod
    def load(cls, path: Path) -> Signer:
        """Read a key file written by `save` (`tpt keys generate`); refuses one others may read."""
        try:
            mode = path.stat().st_mode
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise KeyFileError(f"cannot read the key file {path}: {err.strerror}") from err
        if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(f"the key file {path} is readable by others (mode {stat.S_IMODE(mode):o}): "
                               f"`chmod 600 {path}`, and consider the key exposed")
        try:
            data = json.loads(text)
            if data.get("format") != KEY_FILE_FORMAT or data.get("version") != KEY_FILE_VERSION:
                raise ValueError(f"not a {KEY_FILE_FORMAT} v{KEY_FILE_VERSION} file")
            signer = cls(Ed25519PrivateKey.from_private_bytes(_unb64(data["private_key"], 32, "private_key")),
                         str(data["actor"]))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise KeyFileError(f"{path} is not a usable tpt signing key file: {err}") from err
        if data.get("key_id") not in (None, signer.key_id):
            raise KeyFileError(f"{path}: key_id {data['key_id']} does not match its key ({signer.key_id})")
        return signer


# --- the registry: who holds which key, for which nation and role -------------------------------------------

class KeyRegistration(_Frozen):
    """A public key to register: its holder, their nation and the role it signs for."""

    key_id: str = Field(pattern=_KEY_ID)
    actor: str = Field(min_length=1, max_length=200)
    nation: str = Field(pattern=r"^[A-Z]{2,8}$", description="ISO alpha-2 (US for U.S. parties), or e.g. NATO")
    role: str = Field(min_length=1, max_length=60)
    public_key: str = Field(pattern=_B64_KEY)

    @classmethod
    def of(cls, signer: Signer, nation: str, role: str) -> KeyRegistration:
        return cls(key_id=signer.key_id, actor=signer.actor, nation=nation, role=role, public_key=signer.public_key)

    @classmethod
    def from_public_key(cls, actor: str, nation: str, role: str, public_key: str) -> KeyRegistration:
        """ValueError when the key is not a base64 Ed25519 public key or a field is out of bounds."""
        return cls(key_id=key_id_of(_unb64(public_key, 32, "public key")), actor=actor, nation=nation, role=role,
                   public_key=public_key)

    def check_key_id(self) -> None:
        if key_id_of(_unb64(self.public_key, 32, "public key")) != self.key_id:
            raise ValueError(f"key id {self.key_id} is not the fingerprint of that public key")


class SignerKey(KeyRegistration):
    """A registered key as the registry holds it: validity window and revocation included."""

    valid_from: AwareDatetime
    valid_until: AwareDatetime | None = None
    revoked_at: AwareDatetime | None = None
    revocation_reason: str | None = None
    added_by: str = ""

    @field_validator("valid_from", "valid_until", "revoked_at")
    @classmethod
    def _times_utc(cls, value: datetime | None) -> datetime | None:
        return _utc(value) if value is not None else None

    def verifies(self, signature: DecisionSignature) -> bool:
        return verifies(self.public_key, signature)

    def public_record(self) -> dict[str, Any]:
        """What the audit event keeps beside the signature: enough to verify it offline."""
        return self.model_dump(mode="json", include={"key_id", "actor", "nation", "role", "public_key"})


@dataclass(frozen=True)
class Requirement:
    """Who may make a decision: the actor it names, the role their key must hold, and the nation (None: any)."""

    actor: str
    role: str
    nation: str | None


class SignaturePolicy(_Frozen):
    """Whether signatures are mandatory: for people's decisions, and for operators' retry/skip."""

    decisions: bool = True
    operators: bool = False


class SignerSnapshot(_Frozen):
    """The registry's keys that can matter to one transfer, as loaded at a stage start or a refresh."""

    keys: list[SignerKey] = Field(default_factory=list)
    loaded_at: AwareDatetime
    nations: list[str] = Field(default_factory=list, description="the nations loaded (operators: all)")
    policy: SignaturePolicy = SignaturePolicy()

    def key(self, key_id: str) -> SignerKey | None:
        return next((k for k in self.keys if k.key_id == key_id), None)

    def active_key(self, actor: str, role: str, now: datetime) -> SignerKey | None:
        """A usable key of this actor for this role at `now`: proof they are a registered party."""
        return next((k for k in self.keys if k.actor == actor and k.role == role and _usable(k, now) is None), None)

    def check(self, signature: DecisionSignature, *, kind: str, context: DecisionContext, body: str,
              who: Requirement, now: datetime) -> SignerKey:
        """The key that made this valid signature; SignatureRefused naming the first problem otherwise."""
        s = signature
        if s.decision != kind:
            raise SignatureRefused(f"the signature is for a {s.decision} decision, not {kind}")
        if s.signer != who.actor:
            raise SignatureRefused(f"the signature is by {s.signer}, but the decision is made by {who.actor}")
        if s.transfer_id != context.transfer_id:
            raise SignatureRefused(f"the signature was made for transfer {s.transfer_id}, not {context.transfer_id}; "
                                   "a signature counts only for the transfer it was made for")
        if s.request_digest != context.request_digest:
            raise SignatureRefused(
                f"the signature was made over request version {s.request_digest[:12]}…, but the current version "
                f"is {context.request_digest[:12]}…; read the current request and sign again")
        if s.stage != context.stage:
            raise SignatureRefused(f"the signature was made for stage {s.stage}; the decision is taken in "
                                   f"{context.stage}")
        if s.subject != context.subject:
            raise SignatureRefused(f"the signature is about '{s.subject}', not '{context.subject}'; sign again")
        if s.body_digest != body:
            raise SignatureRefused("the decision's fields differ from those signed (altered after signing)")
        key = self.key(s.key_id)
        if key is None:
            raise SignatureRefused(f"key {s.key_id} is not in the signer registry for {', '.join(self.nations)} or "
                                   "operators: register it (`tpt keys add`), then `tpt keys refresh`")
        if key.actor != who.actor:
            raise SignatureRefused(f"key {key.key_id} belongs to {key.actor}, not {who.actor}")
        unusable = _usable(key, now, s.signed_at)
        if unusable:
            raise SignatureRefused(unusable)
        if s.signed_at > now + CLOCK_SKEW:
            raise SignatureRefused(f"the signature is dated {s.signed_at:%Y-%m-%d %H:%M:%S} UTC, in the future; "
                                   "check the signer's clock")
        if key.role != who.role or (who.nation is not None and key.nation != who.nation):
            wanted = f"{who.role} of {who.nation}" if who.nation else who.role
            raise SignatureRefused(f"key {key.key_id} of {key.actor} is registered for {key.role} of {key.nation}; "
                                   f"this decision needs a key for {wanted}")
        if not key.verifies(s):
            raise SignatureRefused(f"the signature does not verify with key {key.key_id} of {key.actor} "
                                   "(forged, or altered after signing)")
        return key


def _usable(key: SignerKey, now: datetime, signed_at: datetime | None = None) -> str | None:
    """Why a key cannot sign now (or at `signed_at`), or None."""
    if key.revoked_at is not None:
        reason = f" ({key.revocation_reason})" if key.revocation_reason else ""
        return f"key {key.key_id} of {key.actor} was revoked at {key.revoked_at:%Y-%m-%d %H:%M:%S} UTC{reason}"
    for moment in (signed_at, now):
        if moment is None:
            continue
        if moment < key.valid_from:
            return f"key {key.key_id} of {key.actor} is valid only from {key.valid_from:%Y-%m-%d %H:%M:%S} UTC"
        if key.valid_until is not None and moment >= key.valid_until:
            return f"key {key.key_id} of {key.actor} expired at {key.valid_until:%Y-%m-%d %H:%M:%S} UTC"
    return None


# --- offline verification of a recorded signature ----------------------------------------------------------

def verify_recorded(*, event_type: str, transfer_id: str, actor: str, role: str, request_digest: str | None,
                    payload: Mapping[str, Any], trusted: Mapping[str, Mapping[str, Any]] | None = None
                    ) -> DecisionSignature | None:
    """Check the signature an audit event keeps (None when it has none); raises ValueError naming the problem.

    Offline: the key is the one the event recorded, and the signed fields are rebuilt from the event itself, so an
    event changed after signing fails even with its hashes recomputed. `trusted` (key id → registry record, e.g.
    from `tpt keys list --json`) also checks the key against a registry held independently."""
    raw_signature, recorded_key = payload.get("signature"), payload.get("signature_key")
    if raw_signature is None:
        return None
    signature = DecisionSignature.model_validate(raw_signature)
    if not isinstance(recorded_key, Mapping):
        raise ValueError("the event keeps a signature but not the key that made it")
    key = KeyRegistration.model_validate(recorded_key)
    key.check_key_id()
    expected = EVENT_DECISIONS.get(event_type)
    problems = [
        (expected is None, f"a {event_type} event is not a signed decision"),
        (signature.decision != expected, f"a {event_type} event holds a {signature.decision} signature"),
        (signature.transfer_id != transfer_id, f"signed for transfer {signature.transfer_id}"),
        (signature.signer != actor or key.actor != actor, f"signed by {signature.signer}, recorded as {actor}"),
        (key.key_id != signature.key_id, f"recorded key {key.key_id} is not the signing key {signature.key_id}"),
        (key.role != role, f"key role {key.role} is not the event's role {role}"),
    ]
    found = next((message for bad, message in problems if bad), None)
    if found:
        raise ValueError(found)
    if body_digest(_recorded_body(event_type, actor, request_digest, payload)) != signature.body_digest:
        raise ValueError(f"the decision recorded is not the one {actor} signed")
    if trusted is not None:
        known = trusted.get(key.key_id)
        if known is None:
            raise ValueError(f"key {key.key_id} of {actor} is not in the trusted registry")
        if known.get("public_key") != key.public_key or known.get("actor") != key.actor:
            raise ValueError(f"key {key.key_id} differs from the trusted registry's")
    if not verifies(key.public_key, signature):
        raise ValueError(f"the signature of {actor} does not verify with key {key.key_id}")
    return signature


def _recorded_body(event_type: str, actor: str, request_digest: str | None,
                   payload: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a decision's signature covers, as its audit event records them (see each model's signed_body)."""
    if event_type == "REQUEST_AMENDED":  # the new request by its digest, which the event carries
        return {"actor": actor, "reason": payload.get("reason"), "request_digest": request_digest}
    if event_type in ("OPS_RETRY", "OPS_SKIP"):
        return {"operator": actor, "reason": payload.get("reason")}
    return {k: v for k, v in payload.items() if k not in ("signature", "signature_key")}


# --- several people's keys (the demo's parties, tests) --------------------------------------------------------

@dataclass(frozen=True)
class Party:
    actor: str
    nation: str
    role: str


class Keychain:
    """Signers by actor id; an SDK client given one signs each decision with the key of the actor it names."""

    def __init__(self, signers: Iterable[tuple[Signer, Party]] = ()):
        self._by_actor: dict[str, tuple[Signer, Party]] = {}
        for signer, party in signers:
            self._by_actor[signer.actor] = (signer, party)

    @classmethod
    def generate(cls, parties: Iterable[Party]) -> Keychain:
        return cls((Signer.generate(p.actor), p) for p in parties)

    def __contains__(self, actor: object) -> bool:
        return actor in self._by_actor

    def __iter__(self) -> Iterator[Signer]:
        return (signer for signer, _ in self._by_actor.values())

    def __len__(self) -> int:
        return len(self._by_actor)

    def for_actor(self, actor: str) -> Signer | None:
        found = self._by_actor.get(actor)
        return found[0] if found else None

    def __getitem__(self, actor: str) -> Signer:
        signer = self.for_actor(actor)
        if signer is None:
            raise KeyError(f"no key for {actor} in this keychain")
        return signer

    def registrations(self) -> list[KeyRegistration]:
        return [KeyRegistration.of(s, p.nation, p.role) for s, p in self._by_actor.values()]

    def save(self, directory: Path) -> None:
        """Each key to `<directory>/<actor>.key`, and the parties to `parties.json`."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for signer, _ in self._by_actor.values():
            signer.save(directory / f"{signer.actor}.key")
        (directory / "parties.json").write_text(json.dumps(
            [{"actor": p.actor, "nation": p.nation, "role": p.role} for _, p in self._by_actor.values()], indent=1))

    @classmethod
    def load(cls, directory: Path) -> Keychain:
        parties = [Party(**p) for p in json.loads((directory / "parties.json").read_text())]
        return cls((Signer.load(directory / f"{p.actor}.key"), p) for p in parties)
