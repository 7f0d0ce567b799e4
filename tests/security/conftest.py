"""Payload-encryption fixtures: keyrings, and clients/workers on the session dev server built the way tpt builds
them (tpt.client.connect with codec settings), each on its own task queue so no other test sees them."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from tpt.client import connect
from tpt.codec.keyring import Keyring, parse_inline
from tpt.settings import Settings


def fresh_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def inline(*entries: tuple[str, str]) -> str:
    return ",".join(f"{key_id}:{key}" for key_id, key in entries)


def ring(*entries: tuple[str, str]) -> Keyring:
    return parse_inline(inline(*entries))


@pytest.fixture
def key_a() -> tuple[str, str]:
    return ("k-a", fresh_key())


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str]) -> Iterator[None]:
    """No TPT_* from the calling shell, and a private state directory (no dev key file of a real `tpt dev`)."""
    for name in [n for n in os.environ if n.startswith("TPT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TPT_STATE_DIR", str(tmp_path))
    yield


def address_of(env: WorkflowEnvironment) -> str:
    return env.client.service_client.config.target_host


async def codec_client(env: WorkflowEnvironment, keys: str | None, tmp_state: os.PathLike[str]) -> Client:
    """A client exactly as `tpt` builds one for these settings (the worker uses the client's converter)."""
    settings = Settings(temporal_address=address_of(env), temporal_namespace=env.client.namespace,
                        codec_keys=SecretStr(keys) if keys else None, codec_key_file=None, state_dir=tmp_state)
    return await connect(settings)
