"""Every committed history replays against the current workflow code; a change to the commands is caught."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from tests.replay.careless_edit import TransferWorkflowWithAnUnguardedTimer
from tests.replay.record_histories import REPLAY_KEYS
from tpt.codec import data_converter
from tpt.codec.keyring import parse_inline
from workers.transfer_worker import WORKFLOWS
from workflows.backfill import BackfillWorkflow
from workflows.shipment import ShipmentWorkflow

HISTORIES = sorted(Path(__file__).resolve().parent.glob("*.json"))
# The production converter with the recording keyring: v3 on is encrypted, v1 and v2 pass through as plain.
CONVERTER = data_converter(parse_inline(REPLAY_KEYS))


def load(path: Path) -> WorkflowHistory:
    data = json.loads(path.read_text())
    return WorkflowHistory.from_json(path.stem, data)


def test_the_fast_track_and_full_path_histories_are_committed() -> None:
    names = {p.stem for p in HISTORIES}
    for version in ("v1", "v2", "v3"):
        for path in ("fast-track", "full-path"):
            assert {f"{version}-{path}-transfer", f"{version}-{path}-shipment", f"{version}-{path}-backfill"} <= names


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_history_replays_against_current_code(path: Path) -> None:
    result = await Replayer(workflows=WORKFLOWS, data_converter=CONVERTER).replay_workflow(load(path))
    assert result.replay_failure is None


async def test_an_unguarded_change_to_the_commands_is_caught() -> None:
    replayer = Replayer(workflows=[TransferWorkflowWithAnUnguardedTimer, ShipmentWorkflow, BackfillWorkflow],
                        data_converter=CONVERTER)
    with pytest.raises(NondeterminismError):
        await replayer.replay_workflow(load(next(p for p in HISTORIES if p.stem == "v3-full-path-transfer")))
