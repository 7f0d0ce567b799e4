"""`tpt dev` as a user runs it: up with a demo, down on SIGTERM with nothing left, state kept, clear errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from ..conftest import free_port, server_dir

TPT = str(Path(sys.executable).parent / "tpt")


@pytest.fixture
def stack_env() -> Iterator[dict[str, str]]:
    with server_dir("stack") as state:
        yield os.environ | {
            "TPT_STATE_DIR": str(state),
            "TPT_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
            "TPT_UI_PORT": str(free_port()),
            "TPT_EMBEDDED_PG_PORT": str(free_port()),
            "TPT_METRICS_PORT": str(free_port()),
            "TPT_LOG_FORMAT": "json",
        }


def start(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([TPT, "dev", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def read_until(proc: subprocess.Popen[str], marker: str, timeout: float = 90) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
        if marker in line:
            return lines
    proc.kill()
    raise AssertionError(f"{marker!r} never appeared; output:\n" + "\n".join(lines))


def own_metric(exposition: str, name: str, label: str = "") -> float:
    values = [float(line.rsplit(" ", 1)[1]) for line in exposition.splitlines()
              if line.startswith(name + "{") and label in line]
    assert values, f"{name} {label} not served"
    return sum(values)


def stop_and_check_nothing_left(proc: subprocess.Popen[str]) -> None:
    children = psutil.Process(proc.pid).children(recursive=True)
    assert children, "the stack should have started Temporal and Postgres as children"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    time.sleep(0.5)
    assert [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE] == []


@pytest.fixture
def cleanup() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()


def test_dev_runs_the_demo_stops_cleanly_and_keeps_state(
    stack_env: dict[str, str], cleanup: list[subprocess.Popen[str]]
) -> None:
    first = start(stack_env, "--demo")
    cleanup.append(first)
    output = read_until(first, "reached COMPLETED")
    assert any("Temporal Web UI  http://127.0.0.1:" in line for line in output)
    summary = next(line.split() for line in output if line.startswith("demo transfer"))
    transfer_id, events = summary[2], int(summary[6])
    metrics_url = next(line.split()[-1] for line in output if line.strip().startswith("Metrics"))
    metrics = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    assert own_metric(metrics, "tpt_transfers_started") == 1
    assert own_metric(metrics, "tpt_transfers_finished", 'outcome="COMPLETED"') == 1
    assert own_metric(metrics, "tpt_stage_duration_count", 'stage="ALLY_SIGNOFF"') == 1
    stop_and_check_nothing_left(first)

    second = start(stack_env)  # no demo: the earlier transfer must still be there
    cleanup.append(second)
    read_until(second, "Stop with Ctrl-C")
    history = subprocess.run([TPT, "audit", "history", transfer_id], env=stack_env, capture_output=True, text=True)
    assert history.returncode == 0, history.stderr
    assert "COMPLETED" in history.stdout and "TRANSFER_REQUESTED" in history.stdout
    verify = subprocess.run([TPT, "audit", "verify"], env=stack_env, capture_output=True, text=True)
    assert verify.returncode == 0 and f"{events} event(s) verified" in verify.stdout
    stop_and_check_nothing_left(second)


def test_busy_port_names_the_port_and_the_setting(stack_env: dict[str, str]) -> None:
    ui_port = int(stack_env["TPT_UI_PORT"])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ui_port))
        squatter.listen()
        done = subprocess.run([TPT, "dev"], env=stack_env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"port {ui_port}" in done.stderr and "TPT_UI_PORT" in done.stderr


def test_missing_temporal_binary_names_the_setting(stack_env: dict[str, str], tmp_path: Path) -> None:
    env = stack_env | {"TPT_TEMPORAL_BIN": str(tmp_path / "no-such-temporal")}
    done = subprocess.run([TPT, "dev"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "no-such-temporal" in done.stderr and "TPT_TEMPORAL_BIN" in done.stderr
