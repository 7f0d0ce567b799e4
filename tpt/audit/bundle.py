"""Offline audit bundles: one transfer's events as canonical JSON Lines, closed by a trailer line.

Pure, no database. A bundle proves its own consistency (every hash, every link, the count and the head, and every
signed decision's signature with the public key its event recorded); whether it is *the* history is settled by
comparing its head hash with one held independently, and whether the signing keys were the registered ones by
giving the registry's keys (`tpt keys list --json`) as `trusted`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from tpt.audit.chain import verify_chain
from tpt.audit.events import AuditEvent
from tpt.canonical import canonical_json
from tpt.signing import verify_recorded

FORMAT = "tpt-audit-bundle"
VERSION = 1


class BundleError(Exception):
    def __init__(self, line: int, message: str):
        self.line = line
        self.message = message
        super().__init__(f"line {line}: {message}")


class MalformedBundle(BundleError):
    """The file cannot be read as a bundle at all."""


class BrokenBundle(BundleError):
    """The file reads as a bundle but does not hold together: something was changed, dropped or moved."""


class Trailer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["tpt-audit-bundle"]
    version: int
    transfer_id: str
    events: int
    head_hash: str


@dataclass(frozen=True)
class BundleSummary:
    transfer_id: str
    events: int
    head_hash: str
    version: int
    signatures: int = 0  # signed decisions whose signatures verified


def export(events: Sequence[AuditEvent]) -> bytes:
    """The bundle of one transfer's events, in sequence order; the same events always give the same bytes."""
    if not events:
        raise ValueError("a bundle needs at least one event")
    head = events[-1]
    trailer = Trailer(format=FORMAT, version=VERSION, transfer_id=head.transfer_id, events=len(events),
                      head_hash=head.hash)
    lines = [canonical_json(e.model_dump(mode="json")) for e in events] + [canonical_json(trailer)]
    return b"".join(line + b"\n" for line in lines)


def verify(data: bytes, trusted: Mapping[str, Mapping[str, Any]] | None = None) -> BundleSummary:
    """Check a bundle; raises MalformedBundle or BrokenBundle naming the first offending line. `trusted` (key id →
    registered key) also requires every signing key to be a registered one."""
    lines = _split(data)
    events = [_event(n, raw) for n, raw in enumerate(lines[:-1], start=1)]
    trailer = _trailer(len(lines), lines[-1])
    _check_events(events, trailer)
    _check_trailer(events, trailer, len(lines))
    signed = _check_signatures(events, trusted)
    return BundleSummary(trailer.transfer_id, trailer.events, trailer.head_hash, trailer.version, signed)


def trusted_keys(data: bytes) -> dict[str, dict[str, Any]]:
    """The registry's keys from `tpt keys list --json`, by key id; ValueError when it is not such a file."""
    try:
        keys = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"not JSON: {err}") from None
    if not isinstance(keys, list) or not all(isinstance(k, dict) and "key_id" in k for k in keys):
        raise ValueError("not a list of keys (as `tpt keys list --json` prints)")
    return {k["key_id"]: k for k in keys}


def _check_signatures(events: list[AuditEvent], trusted: Mapping[str, Mapping[str, Any]] | None) -> int:
    """Every recorded signature verifies (with the key its event recorded, and a trusted one if given)."""
    signed = 0
    for n, event in enumerate(events, start=1):
        try:
            found = verify_recorded(event_type=event.event_type, transfer_id=event.transfer_id, actor=event.actor,
                                    role=event.role, request_digest=event.request_digest, payload=event.payload,
                                    trusted=trusted)
        except ValueError as err:
            problem = _first_error(err) if isinstance(err, ValidationError) else str(err)
            raise BrokenBundle(n, f"event {event.event_id}: signature not valid: {problem}") from None
        signed += found is not None
    return signed


def _split(data: bytes) -> list[bytes]:
    if not data:
        raise MalformedBundle(1, "empty file")
    lines = data.split(b"\n")
    if lines[-1]:  # export ends every line, the trailer included, with a newline
        raise MalformedBundle(len(lines), "no newline at the end of the file: the bundle is truncated")
    if len(lines) < 3:
        raise MalformedBundle(1, "a bundle holds at least one event line and the trailer")
    return lines[:-1]


def _json_object(n: int, raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise MalformedBundle(n, "not UTF-8") from None
    except json.JSONDecodeError as err:
        raise MalformedBundle(n, f"not JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(value, dict):
        raise MalformedBundle(n, "not a JSON object")
    return value


def _require_canonical(n: int, raw: bytes, value: BaseModel) -> None:
    # Lenient parsing ("t" for "T" in a time, spaces, reordered keys) must not let an edit through unseen.
    try:
        same = canonical_json(value) == raw
    except ValueError:
        same = False
    if not same:
        raise MalformedBundle(n, "not in canonical form (it was not written by `tpt audit export`, or was edited)")


def _event(n: int, raw: bytes) -> AuditEvent:
    value = _json_object(n, raw)
    if "format" in value:
        raise MalformedBundle(n, "the trailer must be the last line")
    try:
        event = AuditEvent.model_validate(value)
    except ValidationError as err:
        raise MalformedBundle(n, f"not an audit event ({_first_error(err)})") from None
    _require_canonical(n, raw, event)
    return event


def _trailer(n: int, raw: bytes) -> Trailer:
    value = _json_object(n, raw)
    if value.get("format") != FORMAT:
        raise MalformedBundle(n, "the last line is not the bundle trailer: the bundle is truncated")
    if value.get("version") != VERSION:
        raise MalformedBundle(n, f"unsupported bundle version {value.get('version')!r} (this tpt reads {VERSION})")
    try:
        trailer = Trailer.model_validate(value)
    except ValidationError as err:
        raise MalformedBundle(n, f"not a bundle trailer ({_first_error(err)})") from None
    _require_canonical(n, raw, trailer)
    return trailer


def _first_error(err: ValidationError) -> str:
    first = err.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc']) or 'line'}: {first['msg']}"


def _check_events(events: list[AuditEvent], trailer: Trailer) -> None:
    for n, event in enumerate(events, start=1):
        if event.transfer_id != trailer.transfer_id:
            raise BrokenBundle(n, f"event {event.event_id} belongs to {event.transfer_id}, "
                                  f"not to the bundle's transfer {trailer.transfer_id}")
    line = 0

    def numbered() -> Iterator[AuditEvent]:
        # verify_chain stops at the first break, so the last line handed out is the broken one.
        nonlocal line
        for line, event in enumerate(events, start=1):  # noqa: B007
            yield event

    broken = verify_chain(numbered())
    if broken:
        raise BrokenBundle(line, str(broken))


def _check_trailer(events: list[AuditEvent], trailer: Trailer, n: int) -> None:
    if trailer.events != len(events):
        raise BrokenBundle(n, f"the trailer counts {trailer.events} event(s), the bundle holds {len(events)}")
    if trailer.head_hash != events[-1].hash:
        raise BrokenBundle(n, f"the trailer's head hash {trailer.head_hash[:12]}… is not the last event's "
                              f"({events[-1].hash[:12]}…)")
