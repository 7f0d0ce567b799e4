"""The SDK tutorial (docs/sdk_tutorial.md) runs as written against the real stack, twice (it claims to be
idempotent); README.md's copy, once it has one, must not drift from it."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest
from temporalio.client import Client

from tpt.audit.store import AuditStore
from tpt.client import TransferClient
from tpt.messages import UsOutcome
from tpt.signing import SignaturePolicy
from tpt.stages import Stage
from workers.transfer_worker import build_worker

from ..conftest import Database

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "sdk_tutorial.md"
TRANSFER_ID = "TPT-PL-2026-0007"  # examples/himars-pl.json, which the tutorial submits as it is
_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
_SHELL_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)


def snippet(markdown: str) -> str:
    """The first python block."""
    found = _PYTHON_BLOCK.search(markdown)
    assert found, "no ```python block"
    return found.group(1)


async def run_snippet(code: Path, env: dict[str, str], interpreter: str = sys.executable) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(interpreter, str(code), cwd=ROOT, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_the_sdk_tutorial_runs_as_written(
    client: Client, audit_store: AuditStore, database: Database, task_queue: str, tmp_path: Path
) -> None:
    markdown = TUTORIAL.read_text(encoding="utf-8")
    assert len(_PYTHON_BLOCK.findall(markdown)) == 1, "the tutorial is one runnable block"
    assert len(_SHELL_BLOCK.findall(markdown)) == 1, "and one shell block that makes and registers the keys"
    code, keys = tmp_path / "tutorial.py", tmp_path / "keys.sh"
    code.write_text(snippet(markdown))
    keys.write_text(_SHELL_BLOCK.findall(markdown)[0])
    env = {**os.environ, "TPT_TEMPORAL_ADDRESS": client.service_client.config.target_host,
           "TPT_TASK_QUEUE": task_queue, "TPT_STATE_DIR": str(tmp_path / "state"),
           "TPT_DATABASE_URL": database.admin_url}
    registered = await run_snippet(keys, env, interpreter="bash")
    assert registered[0] == 0, registered[2]
    async with build_worker(client, audit_store, task_queue, signature_policy=SignaturePolicy(decisions=True)):
        first = await run_snippet(code, env)
        again = await run_snippet(code, env)
        status = await TransferClient(client, task_queue).status(TRANSFER_ID)

    for returncode, out, err in (first, again):
        assert returncode == 0, err
        assert f"{TRANSFER_ID} is approved and may ship" in out, out
    printed = [line.split(":")[0] for line in first[1].splitlines() if ": awaiting" in line]
    assert list(dict.fromkeys(s for s in printed if s != "REQUESTED")) == ["ALLY_SIGNOFF", "US_REVIEW", "SHIPMENT"]
    assert "US_REVIEW: awaiting U.S. decision by PM_RSAT" in first[1]
    assert again[1].splitlines()[0].startswith("SHIPMENT")  # the second run found the same, approved transfer
    assert status.stage is Stage.SHIPMENT and [s.role for s in status.signatures] == ["MOD", "DKE"]
    assert status.us_decision is not None and status.us_decision.outcome is UsOutcome.APPROVE


def test_the_readme_tutorial_is_the_tested_one() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    if "SDK tutorial" not in readme:
        pytest.skip("README.md has no SDK tutorial section yet")
    assert snippet(readme.split("SDK tutorial", 1)[1]) == snippet(TUTORIAL.read_text(encoding="utf-8"))
