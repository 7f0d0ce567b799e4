"""AES-256-GCM payload codec: every payload leaves the process encrypted; Temporal stores only ciphertext.

An encrypted payload:
  metadata  encoding=binary/encrypted, encryption-key-id=<id>, encryption-cipher=AES-256-GCM
  data      96-bit random nonce || ciphertext || 128-bit tag, over the serialized original payload (its own
            metadata, e.g. json/plain, is inside the ciphertext too)
The associated data binds the format, cipher and key id: relabelling a payload with another key id makes it
fail authentication instead of decrypting under the wrong key.

Payloads without `encoding=binary/encrypted` pass through decode untouched (histories written before encryption
was turned on keep replaying). Search attributes never pass through a codec (the SDK encodes them with the plain
converter): they must stay non-sensitive, see tpt/search_attributes.py.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverter, PayloadCodec, PayloadConverter

from tpt.codec.keyring import Keyring

ENCODING = b"binary/encrypted"
CIPHER = b"AES-256-GCM"
KEY_ID_KEY, CIPHER_KEY = "encryption-key-id", "encryption-cipher"
NONCE_BYTES, TAG_BYTES = 12, 16
FIX = ("every client, worker and codec server must use the same keyring (TPT_CODEC_KEY_FILE or TPT_CODEC_KEYS); "
       "retired keys stay in it for as long as histories encrypted with them are kept")


class PayloadDecryptionError(ValueError):
    """An encrypted payload this process cannot decrypt; the message names the key id and what to do."""

    def __init__(self, key_id: str, message: str):
        self.key_id = key_id
        super().__init__(message)


def is_encrypted(payload: Payload) -> bool:
    return payload.metadata.get("encoding") == ENCODING


def _associated_data(key_id: str) -> bytes:
    return b"tpt-codec/v1|" + CIPHER + b"|" + key_id.encode()


class EncryptionCodec(PayloadCodec):
    """Encrypts with the keyring's current key, decrypts with any of its keys. Without a keyring it encrypts
    nothing and turns an encrypted payload into a clear PayloadDecryptionError (instead of the converter's
    "unknown encoding")."""

    def __init__(self, keyring: Keyring | None):
        self.keyring = keyring
        self._aead = {key_id: AESGCM(key) for key_id, key in (keyring.keys.items() if keyring else ())}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return self.encode_sync(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return self.decode_sync(payloads)

    def encode_sync(self, payloads: Sequence[Payload]) -> list[Payload]:
        if self.keyring is None:
            return list(payloads)
        return [self.encrypt(p) for p in payloads]

    def decode_sync(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) if is_encrypted(p) else p for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        assert self.keyring is not None
        key_id = self.keyring.current
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead[key_id].encrypt(nonce, payload.SerializeToString(), _associated_data(key_id))
        return Payload(metadata={"encoding": ENCODING, KEY_ID_KEY: key_id.encode(), CIPHER_KEY: CIPHER},
                       data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        key_id = payload.metadata.get(KEY_ID_KEY, b"").decode(errors="replace")
        cipher = payload.metadata.get(CIPHER_KEY, b"")
        if self.keyring is None:
            raise PayloadDecryptionError(
                key_id, f"a payload is encrypted with codec key id {key_id!r}, but no codec key is configured in "
                        f"this process: set TPT_CODEC_KEY_FILE (or TPT_CODEC_KEYS) to the keyring the workers use")
        if cipher != CIPHER:
            raise PayloadDecryptionError(
                key_id, f"a payload under codec key id {key_id!r} uses cipher {cipher.decode(errors='replace')!r}; "
                        f"this codec knows only {CIPHER.decode()}: it was written by another tool or a newer tpt")
        aead = self._aead.get(key_id)
        if aead is None:
            raise PayloadDecryptionError(
                key_id, f"a payload is encrypted with codec key id {key_id!r}, which is not in this process's "
                        f"keyring ({self.keyring.source}, ids {', '.join(self.keyring.ids)}): add key {key_id!r} "
                        f"to it; {FIX}")
        if len(payload.data) < NONCE_BYTES + TAG_BYTES:
            raise PayloadDecryptionError(key_id, f"a payload under codec key id {key_id!r} is truncated "
                                                 f"({len(payload.data)} bytes): it was damaged in storage or transit")
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            plain = aead.decrypt(nonce, sealed, _associated_data(key_id))
        except InvalidTag:
            raise PayloadDecryptionError(
                key_id, f"a payload encrypted with codec key id {key_id!r} failed authentication: the key stored "
                        f"under {key_id!r} in {self.keyring.source} is not the key it was encrypted with (or the "
                        f"payload was altered). Restore the original key under that id — a key id must never be "
                        f"reused for a new key; {FIX}") from None
        return Payload.FromString(plain)


class EncryptedFailureConverter(DefaultFailureConverter):
    """Failure messages and stack traces travel as an (encrypted) payload: they can quote request contents.
    Except a decryption error's own: it names only a key id and what to do, and whoever reads it (the UI's codec
    server, another worker) may not hold the key the failing process had."""

    def __init__(self) -> None:
        super().__init__(encode_common_attributes=True)
        self._plain = DefaultFailureConverter()

    def to_failure(self, exception: BaseException, payload_converter: PayloadConverter, failure: Failure) -> None:
        if _caused_by_decryption(exception):
            self._plain.to_failure(exception, payload_converter, failure)
        else:
            super().to_failure(exception, payload_converter, failure)


def _caused_by_decryption(exception: BaseException | None) -> bool:
    seen = 0
    while exception is not None and seen < 20:
        if isinstance(exception, PayloadDecryptionError):
            return True
        exception, seen = exception.__cause__ or exception.__context__, seen + 1
    return False


def data_converter(keyring: Keyring | None) -> DataConverter:
    """The pydantic converter every tpt client and worker uses, with the codec. With a keyring, failure messages
    and stack traces travel encrypted too."""
    codec = EncryptionCodec(keyring)
    if keyring is None:
        return dataclasses.replace(pydantic_data_converter, payload_codec=codec)
    return dataclasses.replace(pydantic_data_converter, payload_codec=codec,
                               failure_converter_class=EncryptedFailureConverter)
