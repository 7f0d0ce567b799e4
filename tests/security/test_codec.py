"""The AES-256-GCM payload codec and its keyring, without a server: encryption, rotation, pass-through, and the
errors a person sees when a key is missing or wrong."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from tpt.codec import EncryptionCodec, KeyringError, PayloadDecryptionError, data_converter, keyring_for
from tpt.codec.keyring import add_key, ensure_dev_key_file, load_file, parse_inline
from tpt.codec.payload import KEY_ID_KEY, NONCE_BYTES
from tpt.settings import Settings
from workers.transfer_worker import WORKFLOWS

from .conftest import fresh_key, inline, ring

SERIAL = "JAV-F-24-018801"
REPLAY_DIR = Path(__file__).resolve().parents[1] / "replay"


async def test_a_payload_leaves_encrypted_under_the_current_key_and_comes_back() -> None:
    keys = ring(("k1", fresh_key()))
    converter = data_converter(keys)
    [payload] = await converter.encode([{"serials": [SERIAL]}])
    assert payload.metadata["encoding"] == b"binary/encrypted"
    assert payload.metadata[KEY_ID_KEY] == b"k1"
    assert SERIAL.encode() not in payload.SerializeToString()
    assert await converter.decode([payload], [dict]) == [{"serials": [SERIAL]}]


async def test_each_encryption_uses_a_fresh_nonce() -> None:
    codec = EncryptionCodec(ring(("k1", fresh_key())))
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'"same"')
    first, second = await codec.encode([plain, plain])
    assert first.data[:NONCE_BYTES] != second.data[:NONCE_BYTES]
    assert first.data != second.data


async def test_rotation_encrypts_with_the_new_key_and_still_decrypts_the_old() -> None:
    old, new = ("k2025", fresh_key()), ("k2026", fresh_key())
    [written_before] = await data_converter(ring(old)).encode(["before rotation"])
    rotated = data_converter(ring(new, old))  # the first entry is current
    [written_after] = await rotated.encode(["after rotation"])
    assert written_after.metadata[KEY_ID_KEY] == b"k2026"
    assert await rotated.decode([written_before, written_after], [str, str]) == ["before rotation", "after rotation"]


async def test_payloads_written_before_encryption_pass_through() -> None:
    plain = await data_converter(None).encode(["no codec here"])
    assert plain[0].metadata["encoding"] == b"json/plain"
    assert await data_converter(ring(("k1", fresh_key()))).decode(plain, [str]) == ["no codec here"]


async def test_an_unknown_key_id_names_the_id_and_what_to_do() -> None:
    [payload] = await data_converter(ring(("k-retired", fresh_key()))).encode(["secret"])
    with pytest.raises(PayloadDecryptionError) as caught:
        await data_converter(ring(("k-current", fresh_key()))).decode([payload], [str])
    message = str(caught.value)
    assert caught.value.key_id == "k-retired"
    assert "'k-retired'" in message and "not in this process's keyring" in message
    assert "k-current" in message  # what the ring does hold
    assert "add key 'k-retired'" in message and "TPT_CODEC_KEY_FILE" in message


async def test_a_wrong_key_under_the_right_id_fails_authentication_clearly() -> None:
    [payload] = await data_converter(ring(("k1", fresh_key()))).encode(["secret"])
    with pytest.raises(PayloadDecryptionError) as caught:
        await data_converter(ring(("k1", fresh_key()))).decode([payload], [str])
    message = str(caught.value)
    assert "'k1' failed authentication" in message
    assert "is not the key it was encrypted with" in message and "never be reused" in message


async def test_a_tampered_or_relabelled_payload_does_not_decrypt() -> None:
    one, two = ("k1", fresh_key()), ("k2", fresh_key())
    codec = EncryptionCodec(ring(one, two))
    [payload] = await codec.encode([Payload(metadata={"encoding": b"json/plain"}, data=b'"x"')])
    flipped = Payload(metadata=payload.metadata, data=payload.data[:-1] + bytes([payload.data[-1] ^ 1]))
    relabelled = Payload(metadata=dict(payload.metadata) | {KEY_ID_KEY: b"k2"}, data=payload.data)
    truncated = Payload(metadata=payload.metadata, data=payload.data[:10])
    for bad in (flipped, relabelled, truncated):
        with pytest.raises(PayloadDecryptionError):
            await codec.decode([bad])


async def test_without_a_keyring_nothing_is_encrypted_and_an_encrypted_payload_says_what_is_missing() -> None:
    [encrypted] = await data_converter(ring(("k1", fresh_key()))).encode(["secret"])
    keyless = data_converter(None)
    [plain] = await keyless.encode(["open"])
    assert plain.metadata["encoding"] == b"json/plain"
    with pytest.raises(PayloadDecryptionError, match="no codec key is configured.*TPT_CODEC_KEY_FILE"):
        await keyless.decode([encrypted], [str])


@pytest.mark.parametrize(("text", "complaint"), [
    ("k1", "not `id:base64key`"),
    ("k1:not base64!", "not valid base64"),
    ("k1:" + "QUFB", "3 bytes; AES-256 needs 32"),
    ("bad id:" + fresh_key(), "must be 1-64 letters"),
    ("k1:{0},k1:{0}".format(fresh_key()), "appears twice"),
    (" , ", "holds no key"),
])
def test_a_bad_inline_keyring_is_refused_naming_the_problem(text: str, complaint: str) -> None:
    with pytest.raises(KeyringError, match="TPT_CODEC_KEYS") as caught:
        parse_inline(text)
    assert complaint in str(caught.value)


def test_keyring_repr_never_shows_keys() -> None:
    key = fresh_key()
    assert key not in repr(ring(("k1", key)))


def test_keys_come_from_the_environment(isolated_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    one, two = ("k-new", fresh_key()), ("k-old", fresh_key())
    monkeypatch.setenv("TPT_CODEC_KEYS", inline(one, two))
    keyring = keyring_for(Settings())
    assert keyring is not None and keyring.current == "k-new" and keyring.ids == ["k-new", "k-old"]
    assert one[1] not in repr(Settings()), "keys must never reach a log line"
    monkeypatch.setenv("TPT_CODEC_KEY_FILE", "/somewhere/keys.json")
    with pytest.raises(KeyringError, match="both set"):
        keyring_for(Settings())


def test_a_key_file_is_created_private_and_rotated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    first = add_key(path, "k1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = add_key(path, "k2")
    keyring = load_file(path)
    assert (first, second) == ("k1", "k2")
    assert keyring.current == "k2" and set(keyring.ids) == {"k1", "k2"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(KeyringError, match="never reused"):
        add_key(path, "k1")


def test_a_damaged_key_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"current": "k9", "keys": {"k1": fresh_key()}}))
    with pytest.raises(KeyringError, match=r"keys.json.*\"current\" is 'k9'"):
        load_file(path)
    with pytest.raises(KeyringError, match="cannot be read"):
        load_file(tmp_path / "missing.json")


def test_the_dev_key_file_applies_only_to_the_dev_servers_address(isolated_env: None, tmp_path: Path) -> None:
    dev = Settings(state_dir=tmp_path, temporal_address="127.0.0.1:7233")
    path = ensure_dev_key_file(dev)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_dev_key_file(dev) == path and load_file(path).ids == load_file(path).ids  # reused, not remade
    assert keyring_for(dev) is not None  # `tpt submit` beside `tpt dev` encrypts with the dev key
    other = Settings(state_dir=tmp_path, temporal_address="127.0.0.1:40123")
    assert keyring_for(other) is None  # a client of another server never picks the dev key up


def committed_history(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, json.loads(path.read_text()))


ENCRYPTED = base64.b64encode(b"binary/encrypted").decode()  # a payload's encoding, as history JSON spells it
PLAIN_HISTORIES = [p for p in sorted(REPLAY_DIR.glob("*.json")) if ENCRYPTED not in p.read_text()]


def test_the_plain_histories_are_the_ones_from_before_encryption() -> None:
    assert {p.stem.split("-")[0] for p in PLAIN_HISTORIES} == {"v1", "v2"}


@pytest.mark.parametrize("path", PLAIN_HISTORIES, ids=lambda p: p.stem)
async def test_histories_recorded_before_encryption_replay_with_the_codec(path: Path) -> None:
    history = committed_history(path)
    replayer = Replayer(workflows=WORKFLOWS, data_converter=data_converter(ring(("k1", fresh_key()))))
    result = await replayer.replay_workflow(history)
    assert result.replay_failure is None


async def test_a_recorded_encrypted_history_does_not_replay_with_another_keyring() -> None:
    """v3 on was recorded encrypted (tests/replay/record_histories.py): without its key the payloads stay sealed."""
    path = REPLAY_DIR / "v3-full-path-transfer.json"
    assert ENCRYPTED in path.read_text()
    replayer = Replayer(workflows=WORKFLOWS, data_converter=data_converter(ring(("k1", fresh_key()))))
    with pytest.raises(RuntimeError, match="encrypted with codec key id 'replay', which is not in this process's"):
        await replayer.replay_workflow(committed_history(path))
