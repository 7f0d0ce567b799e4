"""`tpt audit export` writes a bundle from real Postgres; `tpt audit verify-bundle` checks it with no database."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from tpt.audit import bundle
from tpt.audit.bundle import BrokenBundle
from tpt.audit.events import NewAuditEvent, event_id
from tpt.audit.store import AuditStore
from tpt.stages import Stage

from ..conftest import Database

TPT = str(Path(sys.executable).parent / "tpt")
NO_DATABASE = "postgresql://nobody@127.0.0.1:9/nowhere"  # the discard port: any attempt to connect fails
T0 = datetime(2026, 4, 1, 8, 0, tzinfo=UTC)


def tpt(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"TPT_DATABASE_URL": url, "TPT_LOG_FORMAT": "json"}
    return subprocess.run([TPT, *args], env=env, capture_output=True, text=True)


def event(transfer_id: str, n: int, **changes: object) -> NewAuditEvent:
    fields: dict[str, object] = {
        "event_id": event_id(transfer_id, "SIGN_OFF", n), "transfer_id": transfer_id, "event_type": "SIGN_OFF",
        "stage": Stage.ALLY_SIGNOFF, "actor": f"signer-{n}", "role": "MOD", "workflow_time": T0 + timedelta(hours=n),
        "policy_version": "aeca-2025.1", "request_digest": "cd" * 32,
        "payload": {"approve": True, "n": n, "comment": "vérifié", "value": "1500000.00"},
    }
    return NewAuditEvent.model_validate(fields | changes)


async def seed(store: AuditStore, transfer_id: str, count: int) -> None:
    for n in range(1, count + 1):
        await store.append(event(transfer_id, n))


async def test_export_verifies_offline_and_fails_after_one_changed_byte(
    audit_store: AuditStore, database: Database, tmp_path: Path
) -> None:
    await seed(audit_store, "TPT-EXP-1", 4)
    target = tmp_path / "TPT-EXP-1.jsonl"
    exported = tpt(database.admin_url, "audit", "export", "TPT-EXP-1", "-o", str(target))
    assert exported.returncode == 0, exported.stderr
    assert target.read_bytes() == bundle.export(await audit_store.history("TPT-EXP-1"))
    to_stdout = tpt(database.admin_url, "audit", "export", "TPT-EXP-1")
    assert to_stdout.stdout.encode() == target.read_bytes()

    checked = tpt(NO_DATABASE, "audit", "verify-bundle", str(target))
    head = await audit_store.transfer("TPT-EXP-1")
    assert head is not None
    assert checked.returncode == 0, checked.stderr
    assert f"ok: 4 event(s) of TPT-EXP-1 verified; head hash {head.head_hash}" in checked.stdout

    target.write_bytes(target.read_bytes().replace(b'"n":2', b'"n":3'))
    tampered = tpt(NO_DATABASE, "audit", "verify-bundle", str(target))
    assert tampered.returncode == 1
    assert f"BROKEN at line 2: TPT-EXP-1 event #2 ({event_id('TPT-EXP-1', 'SIGN_OFF', 2)})" in tampered.stderr
    assert "content does not match its hash" in tampered.stderr


async def test_a_truncated_file_is_bad_input(database: Database, tmp_path: Path) -> None:
    target = tmp_path / "cut.jsonl"
    target.write_bytes(b'{"event_id": "x"')
    cut = tpt(NO_DATABASE, "audit", "verify-bundle", str(target))
    assert cut.returncode == 2
    assert "malformed bundle at line 1: no newline at the end" in cut.stderr


async def test_export_of_an_unknown_transfer_is_not_found(database: Database) -> None:
    unknown = tpt(database.admin_url, "audit", "export", "TPT-NOPE")
    assert unknown.returncode == 4 and "no audit events for TPT-NOPE" in unknown.stderr


async def test_export_of_a_broken_chain_keeps_the_evidence_and_fails(
    audit_store: AuditStore, database: Database, admin_conn: asyncpg.Connection, tmp_path: Path
) -> None:
    await seed(audit_store, "TPT-EXP-3", 3)
    await admin_conn.execute("SET session_replication_role = replica")
    await admin_conn.execute("UPDATE audit_events SET actor = 'mallory' WHERE transfer_id = 'TPT-EXP-3' AND seq = 3")
    target = tmp_path / "broken.jsonl"
    exported = tpt(database.admin_url, "audit", "export", "TPT-EXP-3", "-o", str(target))
    assert exported.returncode == 1 and "the stored chain is broken" in exported.stderr
    with pytest.raises(BrokenBundle, match="TPT-EXP-3 event #3") as caught:
        bundle.verify(target.read_bytes())
    assert caught.value.line == 3 and b"mallory" in target.read_bytes()
