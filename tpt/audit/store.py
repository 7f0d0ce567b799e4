"""The audit store on Postgres: idempotent, serialized, hash-chained appends and the reads over them."""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog
from pydantic import AwareDatetime, TypeAdapter

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


_EVENT_TYPES = {
    "event_id": "text", "transfer_id": "text", "seq": "bigint", "event_type": "text", "stage": "text",
    "actor": "text", "role": "text", "workflow_time": "timestamptz", "recorded_at": "timestamptz",
    "policy_version": "text", "request_digest": "text", "payload": "jsonb", "prev_hash": "text", "hash": "text",
}
_EVENT_COLUMNS = tuple(_EVENT_TYPES)
_ROW_COLUMNS = tuple(TransferRow.model_fields)
_ROW_TYPES = {c: {"total_value_usd": "numeric", "needs_attention": "boolean", "last_seq": "bigint",
                  "created_at": "timestamptz", "stage_entered_at": "timestamptz",
                  "updated_at": "timestamptz"}.get(c, "text") for c in _ROW_COLUMNS if c != "transfer_id"}
# Per event: its columns, then the projection row after it (r_…), then the head it was chained onto (expected_…;
# both NULL when chained as a new transfer's first event).
_INPUT = ([("n", "int")] + list(_EVENT_TYPES.items()) + [(f"r_{c}", t) for c, t in _ROW_TYPES.items()]
          + [("expected_seq", "bigint"), ("expected_hash", "text")])

def _field(position: int, column: str, type_: str) -> str:
    """Column `column` of an input line: a JSON array, one value per column in _INPUT order."""
    if type_ == "jsonb":
        return f"x->{position} AS {column}"
    return f"(x->>{position})::{type_} AS {column}"


# Appends in one statement and one round trip, for one event or a batch of them (each of a different transfer).
# An event is written only if its transfer's projection head is the head it was chained onto (`fits`), and then
# with its projection row in the same autocommitted statement: the row is written only for an event that was. ON
# CONFLICT DO NOTHING covers the event id (a retry) and UNIQUE (transfer_id, seq) (a concurrent append that took the
# next sequence number after this statement's snapshot): such an event is written neither, and comes back with the
# stored event of that id (if any) and the transfer's head, so that its caller can tell which (only such events come
# back). Rows go in in transfer order, so two batches touching the same transfers wait for each other instead of
# deadlocking.
_APPEND = f"""
WITH input AS (
    SELECT {", ".join(_field(k, c, t) for k, (c, t) in enumerate(_INPUT))} FROM jsonb_array_elements($1::jsonb) AS x
), fits AS (
    SELECT i.* FROM input i
    WHERE CASE WHEN i.expected_seq IS NULL
               THEN (SELECT true FROM transfers t WHERE t.transfer_id = i.transfer_id) IS NULL
               ELSE coalesce((SELECT t.last_seq = i.expected_seq AND t.head_hash = i.expected_hash
                              FROM transfers t WHERE t.transfer_id = i.transfer_id), false) END
), appended AS (
    INSERT INTO audit_events ({", ".join(_EVENT_COLUMNS)})
    SELECT {", ".join(_EVENT_COLUMNS)} FROM fits
    ORDER BY transfer_id
    ON CONFLICT DO NOTHING
    RETURNING event_id
), projected AS (
    INSERT INTO transfers ({", ".join(_ROW_COLUMNS)})
    SELECT f.transfer_id, {", ".join(f"f.r_{c}" for c in _ROW_TYPES)} FROM fits f JOIN appended a USING (event_id)
    ORDER BY f.transfer_id
    ON CONFLICT (transfer_id) DO UPDATE SET {", ".join(f"{c} = EXCLUDED.{c}" for c in _ROW_TYPES)}
    RETURNING transfer_id
)
SELECT i.n, f.n IS NOT NULL AS fits,
       (SELECT to_jsonb(e) FROM audit_events e WHERE e.event_id = i.event_id) AS existing,
       (SELECT h FROM transfers h WHERE h.transfer_id = i.transfer_id) AS head
FROM input i LEFT JOIN fits f ON f.n = i.n LEFT JOIN appended a ON a.event_id = i.event_id
WHERE a.event_id IS NULL  -- only the events not written come back; the others were
"""

# A fresh snapshot after an append lost a race: whether the event is recorded now, and the chain's head.
_READ_HEAD = """
SELECT (SELECT to_jsonb(e) FROM audit_events e WHERE e.event_id = $2) AS existing,
       (SELECT h FROM transfers h WHERE h.transfer_id = $1) AS head
"""
_NEW_FIELDS = set(NewAuditEvent.model_fields)
_DATETIME = TypeAdapter(AwareDatetime)  # the models' JSON spelling of a datetime, which the hash covers
# Losers of a race retry at once (they already waited for the winner's commit); each round has a winner.
_ATTEMPTS = 100
# Heads this process wrote or read last, per transfer: a guess the database checks, never trusted (see append).
HEAD_CACHE_SIZE = 4096
# Appends waiting while a statement runs go together in the next one (group commit: one commit for many events).
# One statement at a time measured best: two at once mostly wait for each other's WAL flush.
BATCH = 64


def _event_from_record(record: asyncpg.Record | dict[str, Any]) -> AuditEvent:
    return AuditEvent.model_validate(dict(record))


def _head(record: asyncpg.Record | None) -> TransferRow | None:
    return TransferRow.model_validate(dict(record.items())) if record is not None else None


@dataclass(frozen=True)
class _Outcome:
    appended: bool
    fits: bool
    existing: AuditEvent | None
    head: TransferRow | None


_APPENDED = _Outcome(appended=True, fits=True, existing=None, head=None)


@dataclass
class _Pending:
    event: AuditEvent
    row: TransferRow  # the projection after it
    head: TransferRow | None  # the head it is chained onto
    done: asyncio.Future[_Outcome]

    def input(self, n: int) -> list[Any]:
        """Its line of the statement's input: a JSON array of its _INPUT values, in order."""
        event, row, head = self.event.__dict__, self.row.__dict__, self.head
        line: list[Any] = [n]
        for column, of_row, spell in _LAYOUT:
            value = (row if of_row else event)[column]
            line.append(value if spell is None or value is None else spell(value))
        line += (head.last_seq, head.head_hash) if head is not None else (None, None)
        return line


def _enum_value(value: Any) -> Any:
    return value.value


# Values JSON has no type for, spelled so that Postgres reads them back exactly (datetimes are timezone-aware).
_SPELL: dict[str, Callable[[Any], Any]] = {"timestamptz": datetime.isoformat, "numeric": str}
# (column, of the projection row?, spelling) for every column of an event, then of its projection row (_INPUT order).
_LAYOUT: list[tuple[str, bool, Callable[[Any], Any] | None]] = (
    [(c, False, _enum_value if c == "stage" else _SPELL.get(t)) for c, t in _EVENT_TYPES.items()]
    + [(c, True, _SPELL.get(t)) for c, t in _ROW_TYPES.items()])


class AuditStore:
    def __init__(self, pool: asyncpg.Pool, *, batch: int = BATCH, head_cache_size: int = HEAD_CACHE_SIZE):
        self.pool = pool
        self._batch, self._head_cache_size = batch, head_cache_size
        self._pending: list[_Pending] = []
        self._flushing = False  # while a flusher task runs: at most one at a time
        self._heads: OrderedDict[str, TransferRow] = OrderedDict()
        self._flushers: set[asyncio.Task[None]] = set()

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

        The event is chained onto the head this process last wrote or read for its transfer (a transfer's events
        mostly come through one worker, one at a time), or, for a transfer it has not seen, as the first event;
        the statement writes it only if that is the head in the database (see _APPEND), so one round trip
        usually does, shared with the appends of other transfers waiting at the same time. Otherwise the
        statement answers with the real head and the append goes again. UNIQUE (transfer_id, seq) fails the
        loser of a race, so the chain never forks; the loser (which waited for the winner's commit) reads the
        new head and tries again."""
        tid = event.transfer_id
        head = self._heads.get(tid)
        for _ in range(_ATTEMPTS):
            stored = self._chained(event, head)
            row = projection.apply(head, stored)
            outcome = await self._submit(stored, row, head)
            if outcome.appended:
                self._remember(row)
                return stored
            if outcome.existing is not None:
                return self._same_or_conflict(event, outcome.existing)
            if not outcome.fits:  # the head moved on, or this process had not seen it: chain onto the real one
                head = outcome.head
                continue
            # The head fitted but the insert met a conflict: a concurrent append took the next sequence number (or
            # recorded this very event) and committed after this statement's snapshot. Look again.
            log.debug("audit append lost a race, retrying", event_id=event.event_id)
            existing, moved = await self._read_head(tid, event.event_id)
            if existing is not None:
                return self._same_or_conflict(event, existing)
            if moved == head:  # nobody moved the head: the projection lags the events
                self._heads.pop(tid, None)
                raise ProjectionBehind(tid)
            head = moved
        self._heads.pop(tid, None)
        raise AuditContention(event.event_id, _ATTEMPTS)

    def _remember(self, row: TransferRow) -> None:
        self._heads[row.transfer_id] = row
        self._heads.move_to_end(row.transfer_id)
        while len(self._heads) > self._head_cache_size:
            self._heads.popitem(last=False)

    async def _read_head(self, transfer_id: str, event_id: str) -> tuple[AuditEvent | None, TransferRow | None]:
        found = await self.pool.fetchrow(_READ_HEAD, transfer_id, event_id)
        existing = AuditEvent.model_validate(found["existing"]) if found["existing"] is not None else None
        return existing, _head(found["head"])

    # --- group commit -------------------------------------------------------------------------------------

    async def _submit(self, event: AuditEvent, row: TransferRow, head: TransferRow | None) -> _Outcome:
        item = _Pending(event, row, head, asyncio.get_running_loop().create_future())
        self._pending.append(item)
        if not self._flushing:
            self._flushing = True
            task = asyncio.get_running_loop().create_task(self._flush_pending())
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)
        return await item.done

    async def _flush_pending(self) -> None:
        """Statements one at a time, pipelined: the next one goes out before the results of the last are handed
        back, so that their callers prepare their next events while it runs, and the database and this process
        work at the same time instead of taking turns. From a standstill, half of what waits goes first, which
        starts the two groups that then alternate."""
        batch: list[_Pending] = []
        try:
            # Checked again after the connection's release (which may let callers queue more), and no await
            # between the last check and the end: nothing queued is ever left without a flusher.
            while self._pending:
                async with self.pool.acquire() as conn:  # held while statements follow one another
                    batch = self._take(half=True)
                    running = self._start(conn, batch)
                    while running is not None:
                        outcomes = await running
                        waiting = self._take(half=False)
                        following = self._start(conn, waiting)
                        self._deliver(batch, outcomes)
                        batch, running = waiting, following
        except asyncio.CancelledError:  # the loop is going away: so are the callers still waiting
            for item in batch:
                item.done.cancel()
            raise
        finally:
            self._flushing = False

    def _take(self, half: bool) -> list[_Pending]:
        """The next batch: one event per transfer (later ones wait their turn), at most BATCH."""
        live = [item for item in self._pending if not item.done.cancelled()]  # callers may have given up
        limit = min(self._batch, -(-len(live) // 2) if half else len(live))
        batch: list[_Pending] = []
        seen: set[str] = set()
        rest: list[_Pending] = []
        for item in live:
            if len(batch) < limit and item.event.transfer_id not in seen:
                seen.add(item.event.transfer_id)
                batch.append(item)
            else:
                rest.append(item)
        self._pending = rest
        return batch

    def _start(self, conn: asyncpg.Connection, batch: list[_Pending]
               ) -> asyncio.Task[list[_Outcome | BaseException]] | None:
        return asyncio.get_running_loop().create_task(self._execute(conn, batch)) if batch else None

    async def _execute(self, conn: asyncpg.Connection, batch: list[_Pending]) -> list[_Outcome | BaseException]:
        """Each event's outcome, or what went wrong with it; one bad event does not fail the others."""
        try:
            records = await conn.fetch(_APPEND, [item.input(n) for n, item in enumerate(batch)])
        except asyncio.CancelledError:
            raise
        except Exception as err:
            if len(batch) > 1 and isinstance(err, asyncpg.PostgresError):
                # A bad event (or a deadlock with another process) rolled the statement back: one at a time.
                return [(await self._execute(conn, [item]))[0] for item in batch]
            return [err] * len(batch)
        outcomes: list[_Outcome | BaseException] = [_APPENDED] * len(batch)
        for r in records:
            existing = AuditEvent.model_validate(r["existing"]) if r["existing"] is not None else None
            outcomes[r["n"]] = _Outcome(appended=False, fits=r["fits"], existing=existing, head=_head(r["head"]))
        return outcomes

    @staticmethod
    def _deliver(batch: list[_Pending], outcomes: list[_Outcome | BaseException]) -> None:
        for item, outcome in zip(batch, outcomes, strict=True):
            if item.done.done():  # its caller was cancelled meanwhile
                continue
            if isinstance(outcome, BaseException):
                item.done.set_exception(outcome)
            else:
                item.done.set_result(outcome)

    @staticmethod
    def _chained(event: NewAuditEvent, head: TransferRow | None) -> AuditEvent:
        seq, prev_hash = (head.last_seq + 1, head.head_hash) if head else (1, GENESIS_HASH)
        recorded_at = datetime.now(UTC)
        hashed = event.model_dump(mode="json", include=_NEW_FIELDS) | {
            "seq": seq, "prev_hash": prev_hash, "recorded_at": _DATETIME.dump_python(recorded_at, mode="json")}
        return AuditEvent.model_validate({f: getattr(event, f) for f in _NEW_FIELDS} | {
            "seq": seq, "prev_hash": prev_hash, "recorded_at": recorded_at, "hash": event_hash(hashed)})

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
