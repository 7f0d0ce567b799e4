"""The worker's probe server and the managed-Temporal connection settings, in process (no servers needed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tpt.client import connect
from tpt.settings import Settings
from workers.health import HealthServer, probe

from ..conftest import free_port
from .test_worker_process import http_status


class Flags:
    def __init__(self) -> None:
        self.postgres_up = True

    async def ok(self) -> None:
        return None

    async def postgres(self) -> None:
        if not self.postgres_up:
            raise ConnectionRefusedError("connection refused")

    async def hangs(self) -> None:
        await asyncio.sleep(60)


@pytest_asyncio.fixture(loop_scope="session")
async def server() -> AsyncIterator[tuple[HealthServer, Flags]]:
    flags = Flags()
    health = HealthServer(free_port(), {"temporal": flags.ok, "postgres": flags.postgres}, host="127.0.0.1")
    await health.start()
    yield health, flags
    await health.stop()


async def test_readyz_follows_the_checks_and_draining(server: tuple[HealthServer, Flags]) -> None:
    health, flags = server
    assert await http_status(health.port, "/healthz") == 200
    assert await http_status(health.port, "/readyz") == 200
    flags.postgres_up = False
    ready, report = await health.readiness()
    assert not ready and report == {"temporal": "ok", "postgres": "ConnectionRefusedError: connection refused"}
    assert await http_status(health.port, "/readyz") == 503
    assert await http_status(health.port, "/healthz") == 200, "a dependency outage must not restart the worker"
    flags.postgres_up = True
    health.draining = True
    assert await http_status(health.port, "/readyz") == 503
    assert await http_status(health.port, "/elsewhere") == 404


async def test_a_hanging_check_times_out_instead_of_hanging_the_probe() -> None:
    flags = Flags()
    health = HealthServer(free_port(), {"temporal": flags.hangs}, host="127.0.0.1", check_timeout=0.2)
    assert await health.readiness() == (False, {"temporal": "timed out"})


async def test_probe_exit_status_for_the_container_healthcheck(server: tuple[HealthServer, Flags]) -> None:
    health, _ = server
    assert await asyncio.to_thread(probe, "healthz", health.port) == 0
    assert await asyncio.to_thread(probe, "healthz", free_port()) == 1


async def test_a_busy_health_port_names_the_setting(server: tuple[HealthServer, Flags]) -> None:
    health, _ = server
    with pytest.raises(OSError, match="TPT_HEALTH_PORT"):
        await HealthServer(health.port, {}, host="127.0.0.1").start()


async def test_client_certificate_without_its_key_is_refused(tmp_path: Path) -> None:
    cert = tmp_path / "client.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    with pytest.raises(ValueError, match="TPT_TEMPORAL_TLS_CERT and TPT_TEMPORAL_TLS_KEY"):
        await connect(Settings(temporal_tls_cert=cert))


async def test_an_unreadable_tls_file_names_its_setting(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="TPT_TEMPORAL_TLS_CA=.*missing-ca.pem cannot be read"):
        await connect(Settings(temporal_tls_ca=tmp_path / "missing-ca.pem"))


def test_tls_and_api_key_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TPT_TEMPORAL_API_KEY", "sekrit")
    monkeypatch.setenv("TPT_TEMPORAL_TLS_CA", "/etc/tpt/tls/ca.crt")
    settings = Settings()
    assert settings.temporal_api_key is not None and settings.temporal_api_key.get_secret_value() == "sekrit"
    assert "sekrit" not in repr(settings), "the API key must never reach a log line"
    assert settings.temporal_tls_ca == Path("/etc/tpt/tls/ca.crt")
