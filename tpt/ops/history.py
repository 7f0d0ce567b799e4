"""Reading a transfer's Temporal history for a reset: where each stage began, what a reset would undo.

Stages are found by their `TransferStage` search-attribute upserts (never encrypted, so the history needs no key).
A reset lands on a workflow task boundary. The task that upserted `TransferStage=S` may also have accepted the
decision that moved the transfer into S (the last sign-off, the U.S. decision), and a reset drops the updates
accepted after its point; so the reset point is the end of the *next* workflow task. The new run keeps the stage's
entry (and its STAGE_ENTERED event) and undoes everything after it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.converter import decode_typed_search_attributes

from tpt import search_attributes as sa
from tpt.stages import Stage
from workflows.shipment import LEG_DEPARTED_SIGNAL

# Targets a reset can go back to. REQUESTED has no stage entry to keep; BACKFILL and the final stages come after the
# shipment left, which no reset may undo.
RESETTABLE = (Stage.ALLY_SIGNOFF, Stage.US_REVIEW, Stage.CONGRESSIONAL_REVIEW, Stage.SHIPMENT)


class ResetRefused(Exception):
    pass


@dataclass(frozen=True)
class ResetPoint:
    stage: Stage
    stage_event_id: int  # the UpsertWorkflowSearchAttributes that set TransferStage
    workflow_task_completed_event_id: int  # the reset lands here: the end of the task after the stage began
    undone: dict[str, int] = field(default_factory=dict)  # updates accepted after the point, by name
    stages_after: tuple[str, ...] = ()  # stages entered after the point, which the reset undoes


@dataclass(frozen=True)
class HistorySummary:
    stages: list[tuple[int, Stage]]  # (event id, stage) of every TransferStage upsert, in order
    departed: bool  # a shipment leg has left: nothing before it can be undone


def summarize(events: Iterable[HistoryEvent]) -> tuple[HistorySummary, list[HistoryEvent]]:
    kept = list(events)
    stages: list[tuple[int, Stage]] = []
    departed = False
    for event in kept:
        if event.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            attributes = event.upsert_workflow_search_attributes_event_attributes.search_attributes
            value = decode_typed_search_attributes(attributes).get(sa.TRANSFER_STAGE)
            if value is not None:
                stages.append((event.event_id, Stage(value)))
        elif (event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
              and event.workflow_execution_signaled_event_attributes.signal_name == LEG_DEPARTED_SIGNAL):
            departed = True
    return HistorySummary(stages, departed), kept


def reset_point(transfer_id: str, events: Iterable[HistoryEvent], stage: Stage) -> ResetPoint:
    """Where a reset to the start of `stage` lands, or ResetRefused saying why it may not."""
    summary, kept = summarize(events)
    reached = [s for _, s in summary.stages]
    current = reached[-1] if reached else Stage.REQUESTED
    if summary.departed or current in (Stage.BACKFILL, Stage.COMPLETED):
        raise ResetRefused(f"{transfer_id}: a shipment leg has left, which is irreversible; a reset may not undo it. "
                           "Retry the stuck step (`tpt ops retry`) or record the correction as a new decision")
    if stage not in RESETTABLE:
        raise ResetRefused(f"{stage.value} is not a stage a reset can go back to; "
                           f"choose one of {', '.join(s.value for s in RESETTABLE)}")
    marks = [event_id for event_id, s in summary.stages if s is stage]
    if not marks:
        raise ResetRefused(f"{transfer_id} has not reached {stage.value} "
                           f"(stages so far: {', '.join(s.value for s in [Stage.REQUESTED, *reached])})")
    began = marks[-1]  # the latest entry: an amendment restarts sign-off, and that restart is what to go back to
    completed = [e.event_id for e in kept if e.event_id > began
                 and e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED]
    if not completed:
        raise ResetRefused(f"{transfer_id} has only just entered {stage.value}: there is nothing to undo yet")
    point = completed[0]
    undone = Counter(e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
                     for e in kept if e.event_id > point
                     and e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)
    after = tuple(s.value for event_id, s in summary.stages if event_id > point)
    return ResetPoint(stage, began, point, dict(undone), after)
