"""The audit store on Postgres: idempotent, serialized, hash-chained appends and the reads over them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog

from tpt.audit import projection
from tpt.audit.chain import ChainBreak, event_hash, verify_chain
from tpt.audit.events import GENESIS_HASH, AuditEvent, NewAuditEvent
from tpt.audit.projection import TransferRow

log = structlog.get_logger(__name__)


class AuditConflict(Exception):
    """The same event id arrived again with a different body: never overwritten, always surfaced."""

    def __init__(self, event_id: str, differences: list[str]):
        self.event_id = event_id
        self.differences = differences
        super().__init__(f"audit event {event_id} already recorded with different content: {', '.join(differences)}")


class AuditContention(Exception):
    """Concurrent appends to one transfer kept winning the next sequence number; retrying later will do."""

    def __init__(self, event_id: str, attempts: int):
        super().__init__(f"audit event {event_id} lost the race for the chain's head {attempts} times")


class ProjectionBehind(Exception):
    """The projection's head is not the chain's head (e.g. rows deleted): appends wait for a rebuild."""

    def __init__(self, transfer_id: str):
        super().__init__(f"the transfers projection lags the audit events of {transfer_id}: "
                         "run `tpt audit rebuild --apply`")


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to reset: the store's users set no session state (no SET, LISTEN or session-level locks).
    asyncpg still rolls back an open transaction; skipping its reset query saves a round trip per release."""


async def connect_pool(dsn: str, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=_init_connection,
                                     reset=_keep_session)
    assert pool is not None
    return pool


_EVENT_COLUMNS = (
    "event_id", "transfer_id", "seq", "event_type", "stage", "actor", "role", "workflow_time", "recorded_at",
    "policy_version", "request_digest", "payload", "prev_hash", "hash",
)
_ROW_COLUMNS = tuple(TransferRow.model_fields)

_INSERT_EVENT_AND_PROJECTION = f"""
WITH appended AS (
    INSERT INTO audit_events ({", ".join(_EVENT_COLUMNS)})
    VALUES ({", ".join(f"${i + 1}" for i in range(len(_EVENT_COLUMNS)))})
    RETURNING 1
)
INSERT INTO transfers ({", ".join(_ROW_COLUMNS)})
SELECT {", ".join(f"${i + 1 + len(_EVENT_COLUMNS)}" for i in range(len(_ROW_COLUMNS)))} FROM appended
ON CONFLICT (transfer_id) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in _ROW_COLUMNS if c != "transfer_id")}
"""

# One snapshot for both: whether this event is already recorded, and the chain's head.
_READ_HEAD = """SELECT (SELECT to_jsonb(e) FROM audit_events e WHERE e.event_id = $2) AS existing,
                       (SELECT to_jsonb(t) FROM transfers t WHERE t.transfer_id = $1) AS head"""
# Losers of a race retry at once (they already waited for the winner's commit); each round has a winner.
_ATTEMPTS = 100
_UNSET = object()


def _event_from_record(record: asyncpg.Record | dict[str, Any]) -> AuditEvent:
    return AuditEvent.model_validate(dict(record))


class AuditStore:
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    @classmethod
    @asynccontextmanager
    async def open(cls, dsn: str, min_size: int = 1, max_size: int = 10) -> AsyncIterator[AuditStore]:
        pool = await connect_pool(dsn, min_size, max_size)
        try:
            yield cls(pool)
        finally:
            await pool.close()

    async def append(self, event: NewAuditEvent) -> AuditEvent:
        """Record one event; the same event again returns the stored row and writes nothing.

        Two round trips: read the head, then write event and projection in one autocommitted statement.
        UNIQUE (transfer_id, seq) fails the loser of a race at that write, so the chain never forks; the
        loser (which waited for the winner's commit) reads the new head and tries again."""
        failed_on: object = _UNSET
        async with self.pool.acquire() as conn:
            for _ in range(_ATTEMPTS):
                found = await conn.fetchrow(_READ_HEAD, event.transfer_id, event.event_id)
                if found["existing"] is not None:
                    return self._same_or_conflict(event, AuditEvent.model_validate(found["existing"]))
                if found["head"] == failed_on:  # nobody moved the head: the projection lags the events
                    raise ProjectionBehind(event.transfer_id)
                stored = await self._write(conn, event, found["head"])
                if stored is not None:
                    return stored
                failed_on = found["head"]
        raise AuditContention(event.event_id, _ATTEMPTS)

    async def _write(self, conn: asyncpg.Connection, event: NewAuditEvent, head: dict[str, Any] | None
                     ) -> AuditEvent | None:
        """The chained event, written with its projection row; None if a concurrent append won the head."""
        row = TransferRow.model_validate(head) if head else None
        stored = self._chained(event, row)
        try:
            await conn.execute(_INSERT_EVENT_AND_PROJECTION, *_event_args(stored),
                               *_row_args(projection.apply(row, stored)))
        except asyncpg.UniqueViolationError:
            log.debug("audit append lost a race, retrying", event_id=event.event_id)
            return None
        return stored

    @staticmethod
    def _chained(event: NewAuditEvent, head: TransferRow | None) -> AuditEvent:
        fields = event.model_dump() | {
            "seq": head.last_seq + 1 if head else 1,
            "prev_hash": head.head_hash if head else GENESIS_HASH,
            "recorded_at": datetime.now(UTC),
        }
        unhashed = AuditEvent.model_validate(fields | {"hash": ""})
        return unhashed.model_copy(update={"hash": event_hash(unhashed.model_dump(mode="json"))})

    @staticmethod
    def _same_or_conflict(event: NewAuditEvent, stored: AuditEvent) -> AuditEvent:
        mine, theirs = event.body(), stored.new_part().body()
        differences = sorted(k for k in mine if mine[k] != theirs.get(k))
        if differences:
            log.error("audit event conflict", event_id=event.event_id, fields=differences)
            raise AuditConflict(event.event_id, differences)
        return stored

    async def history(self, transfer_id: str) -> list[AuditEvent]:
        records = await self.pool.fetch(
            "SELECT * FROM audit_events WHERE transfer_id = $1 ORDER BY seq", transfer_id
        )
        return [_event_from_record(r) for r in records]

    async def transfer(self, transfer_id: str) -> TransferRow | None:
        record = await self.pool.fetchrow("SELECT * FROM transfers WHERE transfer_id = $1", transfer_id)
        return TransferRow.model_validate(dict(record)) if record else None

    async def transfer_ids(self) -> list[str]:
        records = await self.pool.fetch("SELECT DISTINCT transfer_id FROM audit_events ORDER BY transfer_id")
        return [r["transfer_id"] for r in records]

    async def verify(self, transfer_id: str | None = None) -> tuple[int, list[ChainBreak]]:
        """Recompute chains (one transfer or all): the number of events checked and each chain's first break."""
        ids = [transfer_id] if transfer_id else await self.transfer_ids()
        checked, breaks = 0, []
        for tid in ids:
            events = await self.history(tid)
            checked += len(events)
            broken = verify_chain(events)
            if broken:
                breaks.append(broken)
        return checked, breaks


def _event_args(event: AuditEvent) -> list[Any]:
    values = event.model_dump()
    values["stage"] = event.stage.value
    return [values[c] for c in _EVENT_COLUMNS]


def _row_args(row: TransferRow) -> list[Any]:
    values = row.model_dump()
    return [values[c] for c in _ROW_COLUMNS]
