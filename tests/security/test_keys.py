"""Signing keys and the signer registry: key files, the checks a signature must pass, the registry table and who
may write it, and the `tpt keys` command."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from tpt.canonical import canonical_json
from tpt.keys import store
from tpt.messages import SignOff
from tpt.signing import (
    DecisionContext,
    DecisionSignature,
    KeyFileError,
    KeyRegistration,
    Requirement,
    SignaturePolicy,
    SignatureRefused,
    Signer,
    SignerKey,
    SignerSnapshot,
    body_digest,
)

from ..conftest import Database

TPT = str(Path(sys.executable).parent / "tpt")
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DIGEST = "ab" * 32
CONTEXT = DecisionContext("TPT-DE-1", DIGEST, "ALLY_SIGNOFF")
WHO = Requirement("de.bmvg.signer", "MOD", "DE")


def registered(signer: Signer, nation: str = "DE", role: str = "MOD", **validity: datetime | str | None) -> SignerKey:
    return SignerKey(**KeyRegistration.of(signer, nation, role).model_dump(),
                     **{"valid_from": NOW - timedelta(days=30)} | validity)


def sign_off(signer: Signer, context: DecisionContext = CONTEXT, approve: bool = True) -> SignOff:
    decision = SignOff(signer=signer.actor, nation="DE", role="MOD", approve=approve, request_digest=DIGEST)
    return decision.model_copy(update={"signature": signer.sign(decision, "sign_off", context, at=NOW)})


def check(snapshot: SignerSnapshot, decision: SignOff, context: DecisionContext = CONTEXT) -> SignerKey:
    assert decision.signature is not None
    return snapshot.check(decision.signature, kind="sign_off", context=context, body=body_digest(decision), who=WHO,
                          now=NOW)


def snapshot_of(*keys: SignerKey) -> SignerSnapshot:
    return SignerSnapshot(keys=list(keys), loaded_at=NOW, nations=["DE", "US"])


# --- the checks, pure ----------------------------------------------------------------------------------------

def test_a_valid_signature_names_its_key_and_survives_a_json_round_trip() -> None:
    signer = Signer.generate("de.bmvg.signer")
    decision = SignOff.model_validate_json(sign_off(signer).model_dump_json())
    assert check(snapshot_of(registered(signer)), decision).key_id == signer.key_id
    assert decision.signature is not None and decision.signature.signed_at == NOW
    # the signed statement is canonical: the same fields give the same bytes, whoever serialises them
    assert canonical_json(decision.signature.envelope()) == canonical_json(
        DecisionSignature.model_validate(json.loads(decision.signature.model_dump_json())).envelope())


@pytest.mark.parametrize(("case", "reason"), [
    ("forged", "does not verify"),
    ("altered", "differ from those signed"),
    ("other transfer", "made for transfer TPT-OTHER"),
    ("other version", "made over request version"),
    ("other stage", "made for stage US_REVIEW"),
    ("other kind", "for a us_decision decision"),
    ("impostor", "is by de.bafa.signer"),
    ("unregistered", "not in the signer registry"),
    ("revoked", "was revoked"),
    ("expired", "expired at"),
    ("not yet valid", "valid only from"),
    ("future", "in the future"),
    ("wrong role", "registered for BAFA of DE; this decision needs a key for MOD of DE"),
    ("wrong nation", "registered for MOD of PL"),
])
def test_each_bad_signature_is_refused_with_its_reason(case: str, reason: str) -> None:
    signer, attacker = Signer.generate("de.bmvg.signer"), Signer.generate("de.bmvg.signer")
    key, decision, context = registered(signer), sign_off(signer), CONTEXT
    if case == "forged":  # the registered key id, someone else's signature over the very same statement
        forged = attacker.sign(decision, "sign_off", CONTEXT, at=NOW).signature
        decision = decision.model_copy(update={"signature": decision.signature.model_copy(  # type: ignore[union-attr]
            update={"signature": forged})})
    elif case == "altered":
        decision = decision.model_copy(update={"approve": False})
    elif case == "other transfer":
        decision = sign_off(signer, DecisionContext("TPT-OTHER", DIGEST, "ALLY_SIGNOFF"))
    elif case == "other version":
        decision = sign_off(signer, DecisionContext("TPT-DE-1", "cd" * 32, "ALLY_SIGNOFF"))
    elif case == "other stage":
        decision = sign_off(signer, DecisionContext("TPT-DE-1", DIGEST, "US_REVIEW"))
    elif case == "other kind":
        unsigned = decision.model_copy(update={"signature": None})
        decision = decision.model_copy(update={"signature": signer.sign(unsigned, "us_decision", CONTEXT, at=NOW)})
    elif case == "impostor":  # another registered person signs in de.bmvg.signer's name
        other = Signer.generate("de.bafa.signer")
        unsigned = decision.model_copy(update={"signature": None})
        decision = decision.model_copy(update={"signature": other.sign(unsigned, "sign_off", CONTEXT, at=NOW)})
        key = registered(other, role="BAFA")
    elif case == "unregistered":
        key = registered(attacker)
    elif case == "revoked":
        key = registered(signer, revoked_at=NOW - timedelta(hours=1), revocation_reason="laptop stolen")
    elif case == "expired":
        key = registered(signer, valid_until=NOW - timedelta(hours=1))
    elif case == "not yet valid":
        key = registered(signer, valid_from=NOW + timedelta(hours=1))
    elif case == "future":
        unsigned = decision.model_copy(update={"signature": None})
        decision = decision.model_copy(update={"signature": signer.sign(
            unsigned, "sign_off", CONTEXT, at=NOW + timedelta(hours=1))})
    elif case == "wrong role":
        key = registered(signer, role="BAFA")
    elif case == "wrong nation":
        key = registered(signer, nation="PL")
    with pytest.raises(SignatureRefused, match=reason):
        check(snapshot_of(key), decision, context)


def test_a_revoked_key_proves_no_registered_operator() -> None:
    operator = Signer.generate("ops.duty@tpt")
    active = registered(operator, nation="NATO", role="operator")
    assert snapshot_of(active).active_key("ops.duty@tpt", "operator", NOW) == active
    revoked = active.model_copy(update={"revoked_at": NOW})
    assert snapshot_of(revoked).active_key("ops.duty@tpt", "operator", NOW) is None
    assert snapshot_of(active).active_key("ops.duty@tpt", "MOD", NOW) is None


# --- key files ------------------------------------------------------------------------------------------------

def test_key_files_round_trip_owner_only_and_never_overwritten(tmp_path: Path) -> None:
    signer = Signer.generate("pm.rsat.reviewer")
    path = signer.save(tmp_path / "reviewer.key")
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = Signer.load(path)
    assert (loaded.actor, loaded.key_id, loaded.public_key) == (signer.actor, signer.key_id, signer.public_key)
    with pytest.raises(FileExistsError):
        signer.save(path)
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="readable by others"):
        Signer.load(path)
    path.chmod(0o600)
    data = json.loads(path.read_text())
    path.write_text(json.dumps(data | {"key_id": "0" * 16}))
    with pytest.raises(KeyFileError, match="does not match"):
        Signer.load(path)
    with pytest.raises(KeyFileError, match="cannot read"):
        Signer.load(tmp_path / "missing.key")


# --- the registry table ---------------------------------------------------------------------------------------

async def test_the_registry_keeps_every_key_and_only_revokes_once(admin_conn: asyncpg.Connection) -> None:
    signer = Signer.generate("lv.mod.signer")
    registration = KeyRegistration.of(signer, "LV", "MOD")
    key, added = await store.add(admin_conn, registration, added_by="test")
    assert added and key.revoked_at is None
    assert (await store.add(admin_conn, registration, added_by="test"))[1] is False  # idempotent
    with pytest.raises(store.KeyRegistryError, match="different holder"):
        await store.add(admin_conn, registration.model_copy(update={"role": "MFA"}), added_by="test")
    revoked = await store.revoke(admin_conn, key.key_id, by="test", reason="left the ministry")
    assert revoked.revoked_at is not None and revoked.revocation_reason == "left the ministry"
    with pytest.raises(store.KeyRegistryError, match="already revoked"):
        await store.revoke(admin_conn, key.key_id, by="test", reason="again")
    # even the owner cannot rewrite or remove a key, or undo a revocation
    for statement in ("DELETE FROM signer_keys WHERE key_id = $1",
                      "UPDATE signer_keys SET public_key = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=' "
                      "WHERE key_id = $1",
                      "UPDATE signer_keys SET revoked_at = NULL, revoked_by = NULL WHERE key_id = $1"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await admin_conn.execute(statement, key.key_id)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await admin_conn.execute("TRUNCATE signer_keys")
    snapshot = await store.snapshot(admin_conn, ["LV"], SignaturePolicy())
    assert key.key_id in {k.key_id for k in snapshot.keys}  # recently revoked: still named, so refusals say why
    assert all(k.nation in ("LV",) or k.role == "operator" for k in snapshot.keys)


async def test_the_worker_role_reads_the_registry_and_only_appends_audit_events(database: Database) -> None:
    worker = await asyncpg.connect(database.worker_url)
    try:
        assert await worker.fetchval("SELECT count(*) FROM signer_keys") > 0
        signer = Signer.generate("ee.mod.signer")
        denied = [
            ("INSERT INTO signer_keys (key_id, actor, nation, role, public_key, added_by) "
             f"VALUES ('{signer.key_id}', 'x', 'EE', 'MOD', '{signer.public_key}', 'worker')"),
            "UPDATE signer_keys SET revoked_at = now(), revoked_by = 'worker'",
            "DELETE FROM signer_keys",
            "DELETE FROM transfers",
            "UPDATE audit_events SET actor = 'someone'",
            "DELETE FROM audit_events",
            "CREATE TABLE worker_scratch (x int)",
            "INSERT INTO schema_migrations (version, name, checksum) VALUES (99, 'x', 'x')",
        ]
        for statement in denied:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await worker.execute(statement)
        privileges = await worker.fetch(
            """SELECT table_name, privilege_type FROM information_schema.role_table_grants
               WHERE grantee = 'tpt_worker' ORDER BY 1, 2""")
        assert {(r["table_name"], r["privilege_type"]) for r in privileges} == {
            ("audit_events", "INSERT"), ("audit_events", "SELECT"), ("signer_keys", "SELECT"),
            ("transfers", "INSERT"), ("transfers", "SELECT"), ("transfers", "UPDATE")}
    finally:
        await worker.close()


# --- `tpt keys` -------------------------------------------------------------------------------------------------

async def tpt(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(TPT, *args, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_keys_command_generates_registers_lists_and_revokes(database: Database, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TPT_")} | {
        "TPT_DATABASE_URL": database.admin_url, "TPT_STATE_DIR": str(tmp_path), "TPT_TEMPORAL_ADDRESS": "127.0.0.1:9"}
    code, out, err = await tpt(env, "keys", "generate", "--actor", "nl.cdiu.deputy")
    assert code == 0, err
    key_file = tmp_path / "keys" / "nl.cdiu.deputy.key"
    signer = Signer.load(key_file)
    assert signer.key_id in out and f"{key_file}.pub" in out
    code, out, err = await tpt(env, "keys", "add", f"{key_file}.pub", "--nation", "nl", "--role", "CDIU",
                               "--valid-days", "365")
    assert code == 0 and f"registered key {signer.key_id} of nl.cdiu.deputy for CDIU of NL" in out, err
    other = Signer.generate("nl.mod.deputy")
    worker_env = env | {"TPT_DATABASE_URL": database.worker_url}
    (code, out, err), again, role, missing, by_worker = await asyncio.gather(
        tpt(env, "keys", "list", "--actor", "nl.cdiu.deputy", "--json"),
        tpt(env, "keys", "add", f"{key_file}.pub", "--nation", "NL", "--role", "CDIU"),
        tpt(env, "keys", "add", f"{key_file}.pub", "--nation", "NL", "--role", "MOD"),
        tpt(env, "keys", "add", "--nation", "NL", "--role", "MOD"),
        tpt(worker_env, "keys", "add", "--actor", other.actor, "--public-key", other.public_key, "--nation", "NL",
            "--role", "MOD"))
    listed = json.loads(out)
    assert code == 0 and [k["key_id"] for k in listed] == [signer.key_id] and listed[0]["valid_until"], err
    assert again[0] == 0 and "already registered (nothing changed)" in again[1]
    assert role[0] == 3 and "different holder, nation or role" in role[2]
    assert missing[0] == 2 and "give the key" in missing[2]
    assert by_worker[0] == 3 and "permission denied" in by_worker[2]  # the worker's role cannot register keys
    code, out, err = await tpt(env, "keys", "revoke", signer.key_id, "--reason", "test", "--no-refresh")
    assert code == 0 and f"revoked key {signer.key_id}" in out, err
    code, out, err = await tpt(env, "keys", "list", "--actor", "nl.cdiu.deputy", "--active")
    assert code == 0 and signer.key_id not in out and "0 key(s)" in err
