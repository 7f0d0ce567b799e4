"""Child processes that die with their parent, ports checked before use, and errors a person can act on."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

_PR_SET_PDEATHSIG = 1


class StackError(RuntimeError):
    """Something the stack needs is missing or taken; the message says what and which setting changes it."""


def require_free_port(host: str, port: int, what: str, setting: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            raise StackError(
                f"port {port} on {host} ({what}) is already in use: stop whatever holds it "
                f"(`ss -ltnp 'sport = :{port}'` shows it) or choose another port with {setting}"
            ) from err


def port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def require_binary(path: Path, what: str, setting: str) -> Path:
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise StackError(
            f"{what} binary not found at {path}: reinstall the project (`pip install -e .`) "
            f"or point {setting} at an executable"
        )
    return path


def _die_with_parent(sig: int) -> Callable[[], None]:
    def set_pdeathsig() -> None:
        # Linux: the kernel signals the child when the parent dies, even by kill -9, so nothing is orphaned.
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig)

    return set_pdeathsig


def spawn(argv: list[str], log_path: Path, *, death_signal: int, user: str | None = None,
          env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a child in its own process group (a terminal's Ctrl-C reaches only us; we stop it in order)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True, user=user, preexec_fn=_die_with_parent(death_signal),
        )


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def wait_until(check: Callable[[], bool], timeout: float, proc: subprocess.Popen[bytes], what: str,
               log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"{what} exited with code {proc.returncode} while starting; see {log_path}:\n"
                             f"{tail(log_path)}")
        if check():
            return
        time.sleep(0.1)
    raise StackError(f"{what} did not become ready within {timeout:.0f}s; see {log_path}:\n{tail(log_path)}")


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
