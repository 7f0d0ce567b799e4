"""The payload-encryption keyring: named AES-256 keys, one of them current.

The current key encrypts every new payload; every key in the ring decrypts. Rotating is adding a new key and
making it current while the old ones stay for as long as histories encrypted with them are kept (Temporal
histories are immutable: nothing is ever re-encrypted).

Where the ring comes from (`keyring_for`), first match wins:
1. `TPT_CODEC_KEYS`: inline, `id:base64key,id:base64key`; the first is current.
2. `TPT_CODEC_KEY_FILE`: a JSON file `{"current": "id", "keys": {"id": "base64key", ...}}`.
3. The file `tpt dev` made in the state directory, but only for the Temporal address it was made for, so the
   dev key never leaks into a client of another server.
Neither set: no ring, encryption off.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from tpt.settings import Settings

log = structlog.get_logger(__name__)

KEY_BYTES = 32  # AES-256
KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DEV_KEY_FILE = "codec-keys.json"


class KeyringError(ValueError):
    """The configured keyring cannot be used; the message names the setting or file and what to change."""


@dataclass(frozen=True)
class Keyring:
    current: str
    keys: dict[str, bytes]
    source: str  # where it came from, for error messages (never the keys)

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise KeyringError(f"{self.source}: the current key id {self.current!r} is not among its keys")

    @property
    def ids(self) -> list[str]:
        return list(self.keys)

    def __repr__(self) -> str:  # keys never reach a log line
        return f"Keyring(current={self.current!r}, ids={self.ids!r}, source={self.source!r})"


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


def new_key_id(now: datetime | None = None) -> str:
    """A key id that sorts by creation time, e.g. k20260114T101500Z."""
    return "k" + (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode()


def parse_inline(text: str, source: str = "TPT_CODEC_KEYS") -> Keyring:
    """`id:base64key,id:base64key`; the first entry is current."""
    keys: dict[str, bytes] = {}
    for n, entry in enumerate(e.strip() for e in text.split(",")):
        if not entry:
            continue
        key_id, sep, material = entry.partition(":")
        if not sep:
            raise KeyringError(f"{source}: entry {n + 1} is not `id:base64key` (no colon); "
                               "make one with `tpt codec keygen`")
        _add(keys, key_id.strip(), material.strip(), source)
    if not keys:
        raise KeyringError(f"{source} is set but holds no key: give `id:base64key[,id:base64key…]` "
                           "(`tpt codec keygen` prints one) or unset it")
    return Keyring(next(iter(keys)), keys, source)


def parse_document(doc: Any, source: str) -> Keyring:
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), dict) or not doc["keys"]:
        raise KeyringError(f'{source}: expected {{"current": "<id>", "keys": {{"<id>": "<base64 key>", …}}}}')
    keys: dict[str, bytes] = {}
    for key_id, material in doc["keys"].items():
        if not isinstance(material, str):
            raise KeyringError(f"{source}: key {key_id!r} must be a base64 string")
        _add(keys, key_id, material, source)
    current = doc.get("current", next(iter(keys)))
    if not isinstance(current, str) or current not in keys:
        raise KeyringError(f"{source}: \"current\" is {current!r}, which is not one of its keys {list(keys)}")
    return Keyring(current, keys, source)


def load_file(path: Path) -> Keyring:
    source = f"key file {path}"
    try:
        text = path.read_text()
    except OSError as err:
        raise KeyringError(f"TPT_CODEC_KEY_FILE={path} cannot be read ({err.strerror}): point it at the keyring "
                           "file, or create one with `tpt codec keygen --key-file PATH`") from err
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise KeyringError(f"{source} is not JSON ({err.msg} at line {err.lineno})") from err
    _warn_if_readable_by_others(path)
    return parse_document(doc, source)


def keyring_for(settings: Settings) -> Keyring | None:
    """The keyring these settings name (module docstring), or None: encryption off."""
    if settings.codec_keys is not None and settings.codec_key_file is not None:
        raise KeyringError("TPT_CODEC_KEYS and TPT_CODEC_KEY_FILE are both set: keep one")
    if settings.codec_keys is not None:
        return parse_inline(settings.codec_keys.get_secret_value())
    if settings.codec_key_file is not None:
        return load_file(settings.codec_key_file)
    dev = dev_key_file(settings)
    if dev.is_file():
        try:
            doc = json.loads(dev.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if isinstance(doc, dict) and doc.get("dev_temporal_address") == settings.temporal_address:
            return parse_document(doc, f"key file {dev}")
    return None


def dev_key_file(settings: Settings) -> Path:
    return settings.state_dir / DEV_KEY_FILE


def ensure_dev_key_file(settings: Settings) -> Path:
    """`tpt dev`'s keyring: created (0600) on the first run, then reused; bound to the dev server's address."""
    path = dev_key_file(settings)
    if path.exists():
        doc = json.loads(path.read_text())
        parse_document(doc, f"key file {path}")  # fails early and clearly on a damaged file
        if doc.get("dev_temporal_address") != settings.temporal_address:
            doc["dev_temporal_address"] = settings.temporal_address
            _write_private(path, doc, replace=True)
        return path
    key_id = new_key_id()
    _write_private(path, {"current": key_id, "keys": {key_id: encode_key(new_key())},
                          "dev_temporal_address": settings.temporal_address})
    log.info("codec key file created", path=str(path), key_id=key_id)
    return path


def add_key(path: Path, key_id: str | None = None) -> str:
    """Add a fresh key to a key file (created 0600 if missing) and make it current; old keys stay to decrypt."""
    key_id = key_id or new_key_id()
    if not KEY_ID.match(key_id):
        raise KeyringError(f"key id {key_id!r}: use 1-64 letters, digits, '.', '_' or '-'")
    if path.exists():
        doc = json.loads(path.read_text())
        parse_document(doc, f"key file {path}")
        if key_id in doc["keys"]:
            raise KeyringError(f"key file {path} already has a key {key_id!r}: a key id is never reused for "
                               "another key (payloads encrypted under it would stop decrypting); pick a new id")
        doc["keys"] = {key_id: encode_key(new_key())} | doc["keys"]
        doc["current"] = key_id
        _write_private(path, doc, replace=True)
    else:
        _write_private(path, {"current": key_id, "keys": {key_id: encode_key(new_key())}})
    return key_id


def _add(keys: dict[str, bytes], key_id: str, material: str, source: str) -> None:
    if not KEY_ID.match(key_id):
        raise KeyringError(f"{source}: key id {key_id!r} must be 1-64 letters, digits, '.', '_' or '-'")
    if key_id in keys:
        raise KeyringError(f"{source}: key id {key_id!r} appears twice")
    try:
        key = base64.b64decode(material, validate=True)
    except (binascii.Error, ValueError) as err:
        raise KeyringError(f"{source}: key {key_id!r} is not valid base64") from err
    if len(key) != KEY_BYTES:
        raise KeyringError(f"{source}: key {key_id!r} is {len(key)} bytes; AES-256 needs {KEY_BYTES} "
                           "(`tpt codec keygen` makes one)")
    keys[key_id] = key


def _write_private(path: Path, doc: dict[str, Any], *, replace: bool = False) -> None:
    """Write the file so that it is never readable by others, not even for a moment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path.with_name(path.name + ".tmp") if replace else path
    if replace:
        target.unlink(missing_ok=True)  # left by a crash mid-write
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(doc, out, indent=2)
        out.write("\n")
    if replace:
        os.replace(target, path)


def _warn_if_readable_by_others(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("codec key file is readable by other users: chmod 600 it", path=str(path),
                    mode=oct(stat.S_IMODE(mode)))
