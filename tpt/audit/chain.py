"""The per-transfer hash chain: each event's hash covers its content and its predecessor's hash."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tpt.audit.events import GENESIS_HASH, AuditEvent
from tpt.canonical import digest

_HASHED = (
    "event_id", "transfer_id", "seq", "event_type", "stage", "actor", "role", "workflow_time",
    "recorded_at", "policy_version", "request_digest", "payload", "prev_hash",
)


def event_hash(fields: dict[str, Any]) -> str:
    """SHA-256 over the canonical encoding of every hashed field (the hash itself excluded)."""
    return digest({name: fields[name] for name in _HASHED})


@dataclass(frozen=True)
class ChainBreak:
    transfer_id: str
    seq: int
    event_id: str
    reason: str

    def __str__(self) -> str:
        return f"{self.transfer_id} event #{self.seq} ({self.event_id}): {self.reason}"


def verify_chain(events: Iterable[AuditEvent]) -> ChainBreak | None:
    """The first broken link of one transfer's chain, in sequence order, or None if it is whole."""
    expected_prev, expected_seq = GENESIS_HASH, 1
    for event in events:
        found = _check(event, expected_prev, expected_seq)
        if found:
            return ChainBreak(event.transfer_id, event.seq, event.event_id, found)
        expected_prev, expected_seq = event.hash, event.seq + 1
    return None


def _check(event: AuditEvent, expected_prev: str, expected_seq: int) -> str | None:
    if event.seq != expected_seq:
        return f"sequence gap: expected #{expected_seq}"
    if event.prev_hash != expected_prev:
        return "previous-hash link does not match the preceding event"
    recomputed = event_hash(event.model_dump(mode="json"))
    if recomputed != event.hash:
        return f"content does not match its hash (stored {event.hash[:12]}…, recomputed {recomputed[:12]}…)"
    return None
