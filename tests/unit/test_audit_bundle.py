"""Audit bundles verify offline, and any one changed byte, dropped line or swapped pair of lines is caught."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from tpt.audit import bundle
from tpt.audit.bundle import BrokenBundle, BundleError, MalformedBundle
from tpt.audit.chain import event_hash
from tpt.audit.events import GENESIS_HASH, AuditEvent, event_id

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def chain(transfer_id: str, count: int) -> list[AuditEvent]:
    """A whole chain built as the store builds it, without a database."""
    events: list[AuditEvent] = []
    for n in range(1, count + 1):
        fields = {
            "event_id": event_id(transfer_id, "SIGN_OFF", n), "transfer_id": transfer_id, "event_type": "SIGN_OFF",
            "stage": "ALLY_SIGNOFF", "actor": f"signer-{n}", "role": "MOD", "workflow_time": T0 + timedelta(hours=n),
            "recorded_at": T0 + timedelta(hours=n, microseconds=n), "policy_version": "aeca-2025.1",
            "request_digest": "ab" * 32, "payload": {"approve": True, "n": n, "note": "Überprüft"},
            "seq": n, "prev_hash": events[-1].hash if events else GENESIS_HASH, "hash": "",
        }
        fields["hash"] = event_hash(AuditEvent.model_validate(fields).model_dump(mode="json"))
        events.append(AuditEvent.model_validate(fields))
    return events


@pytest.fixture(scope="module")
def exported() -> bytes:
    return bundle.export(chain("TPT-B-1", 3))


def lines_of(data: bytes) -> list[bytes]:
    return data.split(b"\n")[:-1]


def joined(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def test_an_exported_bundle_verifies_and_is_deterministic(exported: bytes) -> None:
    events = chain("TPT-B-1", 3)
    summary = bundle.verify(exported)
    assert (summary.transfer_id, summary.events, summary.head_hash, summary.version) == (
        "TPT-B-1", 3, events[-1].hash, bundle.VERSION)
    assert bundle.export(events) == exported
    trailer = json.loads(lines_of(exported)[-1])
    assert trailer == {"format": "tpt-audit-bundle", "version": 1, "transfer_id": "TPT-B-1", "events": 3,
                       "head_hash": events[-1].hash}


@pytest.mark.parametrize("flip", [0x01, 0x20])
def test_every_single_byte_change_is_caught(exported: bytes, flip: int) -> None:
    # 0x20 swaps letter case ("T"→"t", "Z"→"z"): a lenient parser would read the same instant.
    for position in range(len(exported)):
        altered = bytearray(exported)
        altered[position] ^= flip
        with pytest.raises(BundleError):
            bundle.verify(bytes(altered))


def test_a_changed_payload_byte_names_its_line(exported: bytes) -> None:
    altered = exported.replace(b'"n":2', b'"n":7')
    with pytest.raises(BrokenBundle, match="TPT-B-1 event #2 .*content does not match its hash") as caught:
        bundle.verify(altered)
    assert caught.value.line == 2


def test_a_changed_hash_breaks_the_next_link(exported: bytes) -> None:
    lines = lines_of(exported)
    first = json.loads(lines[0])
    forged = first["hash"][:-1] + ("0" if first["hash"][-1] != "0" else "1")
    lines[0] = lines[0].replace(first["hash"].encode(), forged.encode())
    with pytest.raises(BrokenBundle) as caught:
        bundle.verify(joined(lines))
    assert caught.value.line == 1 and "content does not match its hash" in caught.value.message


@pytest.mark.parametrize(("drop", "line", "why"), [
    (0, 1, "sequence gap: expected #1"),
    (1, 2, "sequence gap: expected #2"),
    (2, 3, "the trailer counts 3 event(s), the bundle holds 2"),
])
def test_a_dropped_event_line_is_caught(exported: bytes, drop: int, line: int, why: str) -> None:
    lines = lines_of(exported)
    del lines[drop]
    with pytest.raises(BrokenBundle) as caught:
        bundle.verify(joined(lines))
    assert caught.value.line == line and why in caught.value.message


def test_a_dropped_trailer_is_a_truncated_bundle(exported: bytes) -> None:
    with pytest.raises(MalformedBundle, match="not the bundle trailer: the bundle is truncated") as caught:
        bundle.verify(joined(lines_of(exported)[:-1]))
    assert caught.value.line == 3


def test_reordered_lines_are_caught(exported: bytes) -> None:
    lines = lines_of(exported)
    lines[1], lines[2] = lines[2], lines[1]
    with pytest.raises(BrokenBundle, match="sequence gap: expected #2") as caught:
        bundle.verify(joined(lines))
    assert caught.value.line == 2
    moved = lines_of(exported)
    moved.insert(0, moved.pop())
    with pytest.raises(MalformedBundle, match="the trailer must be the last line"):
        bundle.verify(joined(moved))


def test_a_consistent_chain_under_a_foreign_trailer_is_caught() -> None:
    other = lines_of(bundle.export(chain("TPT-B-2", 3)))
    lines = lines_of(bundle.export(chain("TPT-B-1", 3)))[:-1] + other[-1:]
    with pytest.raises(BrokenBundle, match="belongs to TPT-B-1, not to the bundle's transfer TPT-B-2"):
        bundle.verify(joined(lines))


@pytest.mark.parametrize(("data", "line", "why"), [
    (b"", 1, "empty file"),
    (b"{}", 1, "no newline at the end"),
    (b"{}\n", 1, "at least one event line and the trailer"),
    (b"[1]\n{}\n", 1, "not a JSON object"),
    (b"\xff\n{}\n", 1, "not UTF-8"),
    (b"{\"seq\": \n{}\n", 1, "not JSON"),
    (b"{\"seq\":1}\n{}\n", 1, "not an audit event"),
])
def test_malformed_files_name_the_line_and_the_problem(data: bytes, line: int, why: str) -> None:
    with pytest.raises(MalformedBundle, match=why) as caught:
        bundle.verify(data)
    assert caught.value.line == line


def test_a_non_canonical_but_equivalent_line_is_refused(exported: bytes) -> None:
    lines = lines_of(exported)
    lines[0] = json.dumps(json.loads(lines[0]), indent=None).encode()  # same content, spaces after separators
    with pytest.raises(MalformedBundle, match="not in canonical form"):
        bundle.verify(joined(lines))


def test_an_unknown_version_is_refused(exported: bytes) -> None:
    with pytest.raises(MalformedBundle, match="unsupported bundle version 2"):
        bundle.verify(exported.replace(b'"version":1', b'"version":2'))


def test_export_refuses_an_empty_history() -> None:
    with pytest.raises(ValueError, match="at least one event"):
        bundle.export([])
