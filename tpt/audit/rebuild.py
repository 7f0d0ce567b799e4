"""Rebuild the `transfers` projection from audit events alone, and say how the stored one differs.

Connections come from `tpt.audit.store.connect_pool`, whose jsonb codec the event payloads need.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg

from tpt.audit.events import AuditEvent
from tpt.audit.projection import TransferRow, fold

_COLUMNS = tuple(TransferRow.model_fields)
_UPSERT = f"""
INSERT INTO transfers ({", ".join(_COLUMNS)}) VALUES ({", ".join(f"${i}" for i in range(1, len(_COLUMNS) + 1))})
ON CONFLICT (transfer_id) DO UPDATE SET {", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS[1:])}
"""


class NeedsOwner(Exception):
    """Rewriting the projection is an administrator's act: the worker's role may not delete its rows."""


@dataclass(frozen=True)
class Difference:
    transfer_id: str
    column: str  # a column name, or "(row)" when the whole row is missing or extra
    stored: Any
    rebuilt: Any

    def __str__(self) -> str:
        if self.column == "(row)":
            what = "missing: the events give a row" if self.stored is None else "extra: no events for it"
            return f"{self.transfer_id}  row {what}"
        return f"{self.transfer_id}  {self.column}: stored {self.stored!r}, rebuilt {self.rebuilt!r}"


def compare(stored: dict[str, TransferRow], rebuilt: dict[str, TransferRow]) -> list[Difference]:
    """Every difference, ordered by transfer id; one per differing column."""
    found: list[Difference] = []
    for tid in sorted(stored.keys() | rebuilt.keys()):
        old, new = stored.get(tid), rebuilt.get(tid)
        if old is None or new is None:
            found.append(Difference(tid, "(row)", old, new))
            continue
        found += [Difference(tid, c, getattr(old, c), getattr(new, c))
                  for c in _COLUMNS if getattr(old, c) != getattr(new, c)]
    return found


async def _events_by_transfer(conn: asyncpg.Connection) -> AsyncIterator[list[AuditEvent]]:
    # A cursor streams the table: memory holds one transfer's chain at a time.
    current: list[AuditEvent] = []
    async for record in conn.cursor("SELECT * FROM audit_events ORDER BY transfer_id, seq", prefetch=1000):
        event = AuditEvent.model_validate(dict(record))
        if current and current[0].transfer_id != event.transfer_id:
            yield current
            current = []
        current.append(event)
    if current:
        yield current


async def _rebuilt(conn: asyncpg.Connection) -> dict[str, TransferRow]:
    rows: dict[str, TransferRow] = {}
    async for events in _events_by_transfer(conn):
        row = fold(events)
        assert row is not None
        rows[row.transfer_id] = row
    return rows


async def _stored(conn: asyncpg.Connection) -> dict[str, TransferRow]:
    return {r["transfer_id"]: TransferRow.model_validate(dict(r)) for r in await conn.fetch("SELECT * FROM transfers")}


async def check(conn: asyncpg.Connection) -> list[Difference]:
    """Compare without changing anything; one snapshot, so concurrent appends cannot show up as differences."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return compare(await _stored(conn), await _rebuilt(conn))


async def apply(conn: asyncpg.Connection) -> list[Difference]:
    """Rewrite the differing rows in one transaction (needs the table owner); the differences it fixed."""
    async with conn.transaction():
        # Appends wait (they update transfers) while we read the events and rewrite; readers carry on.
        if not await conn.fetchval("SELECT has_table_privilege('transfers', 'DELETE')"):
            raise NeedsOwner("rewriting the projection needs the database owner's URL, not the worker's role")
        await conn.execute("LOCK TABLE transfers IN EXCLUSIVE MODE")
        rebuilt = await _rebuilt(conn)
        found = compare(await _stored(conn), rebuilt)
        changed = sorted({d.transfer_id for d in found})
        await conn.execute("DELETE FROM transfers WHERE transfer_id = ANY($1::text[])",
                           [t for t in changed if t not in rebuilt])
        await conn.executemany(_UPSERT, [_args(rebuilt[t]) for t in changed if t in rebuilt])
    return found


def _args(row: TransferRow) -> list[Any]:
    values = row.model_dump()
    return [values[c] for c in _COLUMNS]
