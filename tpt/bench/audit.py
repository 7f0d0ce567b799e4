"""Appends per second through AuditStore.append (idempotency check, hash chain, projection) against plain
INSERTs of the very same rows into a copy of the table without chain, projection or trigger, in one run.

Only the writes are timed: events are built beforehand, rows for the plain path are the ones the store wrote (their
arguments too). Both paths go through the same pool with the same number of concurrent writers, each writer taking
whole transfers in order; the plain path writes one autocommitted INSERT per row, as the store's callers would
have to without it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from tpt.audit.events import AuditEvent, NewAuditEvent, event_id
from tpt.audit.store import AuditStore
from tpt.bench import scratch
from tpt.settings import Settings
from tpt.stages import PATH

_COLUMNS = tuple(AuditEvent.model_fields)
_PLAIN_TABLE = "CREATE TABLE audit_events_plain (LIKE audit_events INCLUDING ALL)"  # keys and indexes, no trigger
_PLAIN_INSERT = (f"INSERT INTO audit_events_plain ({', '.join(_COLUMNS)}) "
                 f"VALUES ({', '.join(f'${i}' for i in range(1, len(_COLUMNS) + 1))})")
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Config:
    events: int
    transfers: int
    concurrency: int


@dataclass(frozen=True)
class Rate:
    events: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.events / self.seconds if self.seconds else float("inf")


@dataclass(frozen=True)
class Result:
    config: Config
    server: str
    database: str
    chained: Rate
    plain: Rate
    verified_events: int
    chain_breaks: int

    @property
    def ratio(self) -> float:
        return self.chained.per_second / self.plain.per_second

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "chained_per_second": self.chained.per_second, "plain_per_second": self.plain.per_second,
            "ratio": self.ratio,
        }


def workload(config: Config) -> list[list[NewAuditEvent]]:
    """Each transfer's events in order: a request, then sign-offs and stage changes along the path."""
    per, extra = divmod(config.events, config.transfers)
    return [_transfer_events(f"BENCH-{t:05d}", per + (t < extra)) for t in range(config.transfers)]


def _transfer_events(transfer_id: str, count: int) -> list[NewAuditEvent]:
    return [_event(transfer_id, n) for n in range(1, count + 1)]


def _event(transfer_id: str, n: int) -> NewAuditEvent:
    kind = "TRANSFER_REQUESTED" if n == 1 else ("STAGE_ENTERED" if n % 2 == 0 else "SIGN_OFF")
    stage = PATH[(n // 2) % (len(PATH) - 1)]
    payload: dict[str, Any] = (
        {"donor": "DE", "recipient": "UA", "total_value_usd": "1250000.00", "priority": "URGENT", "items": 3}
        if n == 1 else {"from": "previous", "to": stage.value} if kind == "STAGE_ENTERED"
        else {"approve": True, "comment": "checked against the end-use certificate", "signer": f"mod-{n}"}
    )
    return NewAuditEvent(
        event_id=event_id(transfer_id, kind, n), transfer_id=transfer_id, event_type=kind, stage=stage,
        actor=f"official-{n % 7}", role="MOD", workflow_time=T0 + timedelta(minutes=n),
        policy_version="aeca-2025.1", request_digest="ab" * 32, payload=payload,
    )


Batches = Sequence[Sequence[Any]]  # per transfer, its items in order
_ROUNDS = 6  # the two paths alternate, so a burst of load from elsewhere hits both alike


def _segments(batches: list[list[NewAuditEvent]], rounds: int) -> list[list[list[NewAuditEvent]]]:
    """Round k takes the k-th consecutive slice of every transfer's events: chains carry on across rounds."""
    return [[b[len(b) * k // rounds: len(b) * (k + 1) // rounds] for b in batches] for k in range(rounds)]


async def _timed(batches: Batches, concurrency: int, writer: Callable[[int, Batches], Awaitable[None]]) -> float:
    """Seconds for `concurrency` writers, each taking whole transfers and writing their items in order."""
    started = time.perf_counter()
    await asyncio.gather(*(writer(i, batches[i::concurrency]) for i in range(concurrency)))
    return time.perf_counter() - started


async def _append_all(store: AuditStore, batches: Batches, concurrency: int) -> tuple[float, list[AuditEvent]]:
    stored: list[AuditEvent] = []

    async def writer(_: int, mine: Batches) -> None:
        for events in mine:
            for event in events:
                stored.append(await store.append(event))

    return await _timed(batches, concurrency, writer), stored


async def _insert_all(pool: asyncpg.Pool, rows: list[AuditEvent], concurrency: int) -> float:
    by_transfer: dict[str, list[list[Any]]] = {}
    for row in sorted(rows, key=lambda r: (r.transfer_id, r.seq)):
        by_transfer.setdefault(row.transfer_id, []).append(_args(row))

    async def writer(_: int, mine: Batches) -> None:
        for batch in mine:
            for args in batch:
                await pool.execute(_PLAIN_INSERT, *args)

    return await _timed(list(by_transfer.values()), concurrency, writer)


async def _measure(url: str, config: Config) -> tuple[Rate, Rate]:
    """Both paths through one pool (the store's: `concurrency` connections) with `concurrency` writers."""
    c = config.concurrency
    chained = plain = 0.0
    written = 0
    async with AuditStore.open(url, c, c) as store:
        await store.pool.execute(_PLAIN_TABLE)
        for part in _segments(workload(config), _ROUNDS):
            seconds, rows = await _append_all(store, part, c)
            chained += seconds
            plain += await _insert_all(store.pool, rows, c)
            written += len(rows)
    return Rate(written, chained), Rate(written, plain)


def _args(row: AuditEvent) -> list[Any]:
    values = row.model_dump() | {"stage": row.stage.value}
    return [values[c] for c in _COLUMNS]


async def _verify(url: str) -> tuple[int, int]:
    async with AuditStore.open(url, 1, 2) as store:
        checked, breaks = await store.verify()
    return checked, len(breaks)


async def run_bench(settings: Settings, config: Config) -> Result:
    async with scratch.server(settings) as server, scratch.database(server.url) as (name, url):
        chained, plain = await _measure(url, config)
        checked, breaks = await _verify(url)
    return Result(config, server.description, name, chained, plain, checked, breaks)

