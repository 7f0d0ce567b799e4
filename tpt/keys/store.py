"""The signer registry table: register, revoke and list keys (an administrator, with the owner's URL), and the
snapshot a worker loads into a transfer's state (read-only, with the worker's role)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from tpt.signing import OPERATOR, KeyRegistration, SignaturePolicy, SignerKey, SignerSnapshot

# Revoked or expired keys stay in a snapshot this long, so a late decision is refused naming the revocation.
RECENTLY = "30 days"
_COLUMNS = ("key_id", "actor", "nation", "role", "public_key", "valid_from", "valid_until", "revoked_at",
            "revocation_reason", "added_by")

Executor: TypeAlias = "asyncpg.Connection[Any] | asyncpg.Pool[Any]"


class KeyRegistryError(Exception):
    """A registry change that cannot be made; the message says why and what to do."""


def _key(record: asyncpg.Record) -> SignerKey:
    return SignerKey.model_validate({c: record[c] for c in _COLUMNS})


async def add(db: Executor, registration: KeyRegistration, *, added_by: str, valid_from: datetime | None = None,
              valid_until: datetime | None = None) -> tuple[SignerKey, bool]:
    """Register a public key; the same registration again is harmless. (key, True when added now)."""
    try:
        registration.check_key_id()
    except ValueError as err:
        raise KeyRegistryError(str(err)) from err
    try:
        record = await db.fetchrow(
            f"""INSERT INTO signer_keys (key_id, actor, nation, role, public_key, valid_from, valid_until, added_by)
                VALUES ($1, $2, $3, $4, $5, coalesce($6, now()), $7, $8)
                ON CONFLICT DO NOTHING RETURNING {', '.join(_COLUMNS)}""",
            registration.key_id, registration.actor, registration.nation, registration.role,
            registration.public_key, valid_from, valid_until, added_by)
    except asyncpg.CheckViolationError as err:
        raise KeyRegistryError(f"refused by the registry: {err.message} (is valid-until after valid-from?)") from err
    if record is not None:
        return _key(record), True
    existing = await get(db, registration.key_id)
    if existing is None or existing.model_dump(include=set(KeyRegistration.model_fields)) != registration.model_dump():
        raise KeyRegistryError(f"key {registration.key_id} is already registered with a different holder, nation "
                               "or role; a key serves one role of one person: generate another key")
    return existing, False


async def add_all(db: Executor, registrations: Iterable[KeyRegistration], *, added_by: str) -> int:
    """Register several keys (the demo's parties, tests); how many were new."""
    added = 0
    for registration in registrations:
        added += (await add(db, registration, added_by=added_by))[1]
    return added


async def revoke(db: Executor, key_id: str, *, by: str, reason: str) -> SignerKey:
    record = await db.fetchrow(
        f"""UPDATE signer_keys SET revoked_at = now(), revoked_by = $2, revocation_reason = $3
            WHERE key_id = $1 AND revoked_at IS NULL RETURNING {', '.join(_COLUMNS)}""", key_id, by, reason)
    if record is not None:
        return _key(record)
    existing = await get(db, key_id)
    if existing is None:
        raise KeyRegistryError(f"no key {key_id} in the signer registry (`tpt keys list` shows them)")
    raise KeyRegistryError(f"key {key_id} of {existing.actor} was already revoked at {existing.revoked_at}")


async def get(db: Executor, key_id: str) -> SignerKey | None:
    record = await db.fetchrow(f"SELECT {', '.join(_COLUMNS)} FROM signer_keys WHERE key_id = $1", key_id)
    return _key(record) if record else None


async def list_keys(db: Executor, *, actor: str | None = None, nation: str | None = None, role: str | None = None,
                    active_only: bool = False) -> list[SignerKey]:
    records = await db.fetch(
        f"""SELECT {', '.join(_COLUMNS)} FROM signer_keys
            WHERE ($1::text IS NULL OR actor = $1) AND ($2::text IS NULL OR nation = $2)
              AND ($3::text IS NULL OR role = $3)
              AND (NOT $4 OR (revoked_at IS NULL AND valid_from <= now()
                               AND (valid_until IS NULL OR valid_until > now())))
            ORDER BY nation, role, actor, added_at""", actor, nation, role, active_only)
    return [_key(r) for r in records]


async def snapshot(db: Executor, nations: Sequence[str], policy: SignaturePolicy) -> SignerSnapshot:
    """The keys that can sign for one transfer: its nations' and every operator's, current or recently ended."""
    async with _connection(db) as conn, conn.transaction(readonly=True, isolation="repeatable_read"):
        now = await conn.fetchval("SELECT now()")
        records = await conn.fetch(
            f"""SELECT {', '.join(_COLUMNS)} FROM signer_keys
                WHERE (nation = ANY($1::text[]) OR role = $2)
                  AND (revoked_at IS NULL OR revoked_at > now() - interval '{RECENTLY}')
                  AND (valid_until IS NULL OR valid_until > now() - interval '{RECENTLY}')
                ORDER BY key_id""", list(nations), OPERATOR)
    return SignerSnapshot(keys=[_key(r) for r in records], loaded_at=now, nations=list(nations), policy=policy)


@asynccontextmanager
async def _connection(db: Executor) -> AsyncIterator[asyncpg.Connection]:
    """A connection from a pool for the block, or the connection itself."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            yield conn
    else:
        yield db
