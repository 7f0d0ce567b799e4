"""Payload encryption: the keyring (keyring.py), the AES-GCM codec and data converter (payload.py), and the
remote codec server the Temporal Web UI decrypts through (server.py)."""

from tpt.codec.keyring import Keyring, KeyringError, keyring_for
from tpt.codec.payload import EncryptionCodec, PayloadDecryptionError, data_converter

__all__ = ["EncryptionCodec", "Keyring", "KeyringError", "PayloadDecryptionError", "data_converter", "keyring_for"]
