"""`tpt dev` with payload encryption as a user runs it: its own key file (0600) on the first run, the codec server
up and the Web UI pointed at it, the demo completing on ciphertext, and `tpt` in another terminal using the same key."""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
import urllib.request
from pathlib import Path

from temporalio.client import Client

from ..integration.test_dev_stack import TPT, cleanup, read_until, stack_env, start, stop_and_check_nothing_left
from .canary import outside_the_codec, payloads_in, raw_history

__all__ = ["cleanup", "stack_env"]  # the fixtures, borrowed


def test_dev_encrypts_with_its_own_key_and_points_the_ui_at_its_codec_server(
    stack_env: dict[str, str], cleanup: list[subprocess.Popen[str]]
) -> None:
    proc = start(stack_env, "--demo")
    cleanup.append(proc)
    output = read_until(proc, "reached COMPLETED")
    transfer_id = next(line.split()[2] for line in output if line.startswith("demo transfer"))
    key_file = Path(stack_env["TPT_STATE_DIR"]) / "codec-keys.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    keys = json.loads(key_file.read_text())
    assert keys["current"] in keys["keys"] and keys["dev_temporal_address"] == stack_env["TPT_TEMPORAL_ADDRESS"]

    codec_url = next(line.split()[2] for line in output if line.strip().startswith("Codec server"))
    ui_port = int(stack_env["TPT_UI_PORT"])
    assert codec_url == f"http://127.0.0.1:{ui_port + 1}"
    assert urllib.request.urlopen(f"{codec_url}/healthz", timeout=10).read() == b"ok\n"
    ui_settings = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/api/v1/settings", timeout=10).read())
    assert ui_settings["Codec"]["Endpoint"] == codec_url

    stored = asyncio.run(_stored_payloads(stack_env["TPT_TEMPORAL_ADDRESS"], transfer_id))
    assert stored and all(encoding == b"binary/encrypted" for encoding in stored)

    # another terminal with the same TPT_STATE_DIR and address: the dev key is picked up, the status decrypts
    status = subprocess.run([TPT, "status", transfer_id, "--json"], env=stack_env, capture_output=True, text=True,
                            timeout=60)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["stage"] == "COMPLETED"
    listed = subprocess.run([TPT, "codec", "keys"], env=stack_env, capture_output=True, text=True, timeout=60)
    assert str(key_file) in listed.stdout and f"{keys['current']}  (current" in listed.stdout
    stop_and_check_nothing_left(proc)


async def _stored_payloads(address: str, workflow_id: str) -> list[bytes]:
    """The encoding of every payload of the workflow's history, read with a plain client (no codec at all)."""
    client = await Client.connect(address)
    return [payload.metadata.get("encoding", b"") for event in await raw_history(client, workflow_id)
            for path, payload in payloads_in(event) if not outside_the_codec(path)]
