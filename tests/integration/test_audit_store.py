"""The audit store on real Postgres: idempotent, serialized, append-only, tamper-evident, rebuildable."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from tpt.audit.events import GENESIS_HASH, NewAuditEvent, event_id
from tpt.audit.store import AuditConflict, AuditStore
from tpt.stages import Stage

from ..conftest import Database

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def make_event(transfer_id: str, n: int, **changes: object) -> NewAuditEvent:
    fields: dict[str, object] = {
        "event_id": event_id(transfer_id, "SIGN_OFF", n), "transfer_id": transfer_id, "event_type": "SIGN_OFF",
        "stage": Stage.ALLY_SIGNOFF, "actor": f"signer-{n}", "role": "MOD", "workflow_time": T0 + timedelta(minutes=n),
        "policy_version": "aeca-2025.1", "request_digest": "ab" * 32, "payload": {"approve": True, "n": n},
    }
    return NewAuditEvent.model_validate(fields | changes)


async def test_append_chains_events_and_updates_projection(audit_store: AuditStore) -> None:
    first = await audit_store.append(make_event("TPT-CHAIN-1", 1, payload={"donor": "DE", "recipient": "UA"}))
    second = await audit_store.append(make_event("TPT-CHAIN-1", 2))
    assert (first.seq, first.prev_hash) == (1, GENESIS_HASH)
    assert (second.seq, second.prev_hash) == (2, first.hash)
    row = await audit_store.transfer("TPT-CHAIN-1")
    assert row is not None
    assert (row.last_seq, row.head_hash, row.donor, row.stage) == (2, second.hash, "DE", "ALLY_SIGNOFF")


async def test_retried_append_writes_nothing_twice(audit_store: AuditStore) -> None:
    event = make_event("TPT-RETRY-1", 1)
    stored = await audit_store.append(event)
    again = await audit_store.append(event)  # an activity retried after its commit
    assert again == stored
    assert [e.event_id for e in await audit_store.history("TPT-RETRY-1")] == [event.event_id]


async def test_same_id_different_body_is_a_conflict_not_an_overwrite(audit_store: AuditStore) -> None:
    original = await audit_store.append(make_event("TPT-CONFLICT-1", 1))
    with pytest.raises(AuditConflict, match="actor"):
        await audit_store.append(make_event("TPT-CONFLICT-1", 1, actor="someone-else"))
    assert await audit_store.history("TPT-CONFLICT-1") == [original]


async def test_fifty_concurrent_appends_form_one_unbroken_chain(audit_store: AuditStore) -> None:
    await asyncio.gather(*(audit_store.append(make_event("TPT-RACE-1", n)) for n in range(1, 51)))
    events = await audit_store.history("TPT-RACE-1")
    assert [e.seq for e in events] == list(range(1, 51))
    assert all(later.prev_hash == earlier.hash for earlier, later in zip(events, events[1:], strict=False))
    checked, breaks = await audit_store.verify("TPT-RACE-1")
    assert (checked, breaks) == (50, [])


async def test_two_workers_correct_each_others_stale_heads(audit_store: AuditStore, database: Database) -> None:
    """Each store chains onto the head it last saw (a guess); the database refuses a stale guess and the append
    goes again onto the real head, so two workers taking turns on one transfer still build one chain."""
    async with AuditStore.open(database.worker_url, 1, 5) as other:
        for n in range(1, 9):  # strictly alternating: every append after the first starts from a stale head
            await (audit_store if n % 2 else other).append(make_event("TPT-TWO-1", n))
        await asyncio.gather(*((audit_store if n % 2 else other).append(make_event("TPT-TWO-1", n))
                               for n in range(9, 49)))
        again = await other.append(make_event("TPT-TWO-1", 1))  # a retry through the store that never wrote it
    events = await audit_store.history("TPT-TWO-1")
    assert [e.seq for e in events] == list(range(1, 49))
    assert again == events[0]
    assert await audit_store.verify("TPT-TWO-1") == (48, [])


async def test_appends_to_many_transfers_at_once_each_chain_whole(audit_store: AuditStore) -> None:
    transfers = [f"TPT-MANY-{k}" for k in range(40)]
    stored = await asyncio.gather(*(audit_store.append(make_event(t, n)) for n in range(1, 6) for t in transfers))
    assert len({e.hash for e in stored}) == 200
    for t in transfers:
        assert await audit_store.verify(t) == (5, [])
        row = await audit_store.transfer(t)
        assert row is not None and row.last_seq == 5


async def test_an_event_postgres_refuses_fails_alone(audit_store: AuditStore) -> None:
    """Appends waiting together go in one statement; one the database refuses must not take the others down."""
    bad = make_event("TPT-BAD-1", 1, payload={"note": "\u0000"})  # jsonb cannot hold NUL
    results = await asyncio.gather(audit_store.append(bad),
                                   *(audit_store.append(make_event(f"TPT-GOOD-{k}", 1)) for k in range(10)),
                                   return_exceptions=True)
    assert isinstance(results[0], asyncpg.PostgresError), results[0]
    assert all(not isinstance(r, BaseException) for r in results[1:]), results[1:]
    assert await audit_store.history("TPT-BAD-1") == []
    assert await audit_store.transfer("TPT-BAD-1") is None
    assert [await audit_store.verify(f"TPT-GOOD-{k}") for k in range(10)] == [(1, [])] * 10


async def test_a_caller_that_gives_up_leaves_the_others_and_the_chain_whole(audit_store: AuditStore) -> None:
    tasks = [asyncio.create_task(audit_store.append(make_event("TPT-CANCEL-1", n))) for n in range(1, 21)]
    await asyncio.sleep(0)
    tasks[3].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert all(t.cancelled() or t.exception() is None for t in tasks)
    stored = await audit_store.append(make_event("TPT-CANCEL-1", 4))  # the retry of the abandoned one
    checked, breaks = await audit_store.verify("TPT-CANCEL-1")
    assert (checked, breaks) == (20, []) and stored.event_id.endswith(":4")


@pytest.mark.parametrize("statement", [
    "UPDATE audit_events SET actor = 'mallory' WHERE transfer_id = 'TPT-RO-1'",
    "DELETE FROM audit_events WHERE transfer_id = 'TPT-RO-1'",
    "TRUNCATE audit_events",
])
async def test_worker_role_cannot_rewrite_history(audit_store: AuditStore, statement: str) -> None:
    await audit_store.append(make_event("TPT-RO-1", 1))
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await audit_store.pool.execute(statement)
    assert len(await audit_store.history("TPT-RO-1")) == 1


async def test_even_the_owner_is_refused_by_the_trigger(
    audit_store: AuditStore, admin_conn: asyncpg.Connection
) -> None:
    await audit_store.append(make_event("TPT-RO-2", 1))
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await admin_conn.execute("DELETE FROM audit_events WHERE transfer_id = 'TPT-RO-2'")


async def test_verify_names_a_row_a_superuser_altered(audit_store: AuditStore, admin_conn: asyncpg.Connection) -> None:
    for n in range(1, 4):
        await audit_store.append(make_event("TPT-TAMPER-1", n))
    # A superuser can switch triggers off; the chain still gives them away.
    await admin_conn.execute("SET session_replication_role = replica")
    await admin_conn.execute(
        "UPDATE audit_events SET actor = 'mallory' WHERE transfer_id = 'TPT-TAMPER-1' AND seq = 2")
    checked, breaks = await audit_store.verify("TPT-TAMPER-1")
    assert checked == 3
    assert [(b.seq, b.event_id) for b in breaks] == [(2, event_id("TPT-TAMPER-1", "SIGN_OFF", 2))]
    assert "content does not match its hash" in breaks[0].reason
