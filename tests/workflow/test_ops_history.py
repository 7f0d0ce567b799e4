"""Where `tpt ops reset --to-stage` lands in a history, and when it refuses (pure: synthetic histories)."""

from __future__ import annotations

import pytest
from temporalio.api.common.v1 import SearchAttributes
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.converter import encode_search_attributes

from tpt import search_attributes as sa
from tpt.ops.history import ResetRefused, reset_point
from tpt.stages import Stage


class History:
    def __init__(self) -> None:
        self.events: list[HistoryEvent] = []

    def add(self, event_type: EventType.ValueType) -> HistoryEvent:
        self.events.append(HistoryEvent(event_id=len(self.events) + 1, event_type=event_type))
        return self.events[-1]

    def task(self) -> History:
        for kind in ("SCHEDULED", "STARTED", "COMPLETED"):
            self.add(getattr(EventType, f"EVENT_TYPE_WORKFLOW_TASK_{kind}"))
        return self

    def stage(self, stage: Stage) -> History:
        attributes = SearchAttributes()
        encode_search_attributes(TypedSearchAttributes([SearchAttributePair(sa.TRANSFER_STAGE, stage.value)]),
                                 attributes)
        event = self.add(EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES)
        event.upsert_workflow_search_attributes_event_attributes.search_attributes.CopyFrom(attributes)
        return self

    def update(self, name: str) -> History:
        event = self.add(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)
        event.workflow_execution_update_accepted_event_attributes.accepted_request.input.name = name
        return self

    def signal(self, name: str) -> History:
        self.add(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED).workflow_execution_signaled_event_attributes \
            .signal_name = name
        return self


def signed_off_twice() -> History:
    h = History().task().stage(Stage.ALLY_SIGNOFF).task()  # the stage began; the task after it completed at 8
    h.task().update("sign_off").task().update("sign_off").stage(Stage.US_REVIEW).task()
    return h


def test_the_reset_lands_after_the_task_that_began_the_stage_and_counts_what_it_undoes() -> None:
    point = reset_point("TPT-X", signed_off_twice().events, Stage.ALLY_SIGNOFF)
    assert (point.stage_event_id, point.workflow_task_completed_event_id) == (4, 7)
    assert point.undone == {"sign_off": 2} and point.stages_after == ("US_REVIEW",)


def test_the_latest_entry_of_a_stage_is_the_one_reset_to() -> None:
    h = signed_off_twice().update("amend").stage(Stage.ALLY_SIGNOFF).task().task()  # an amendment restarts it
    point = reset_point("TPT-X", h.events, Stage.ALLY_SIGNOFF)
    assert (point.stage_event_id, point.workflow_task_completed_event_id, point.undone) == (21, 24, {})


@pytest.mark.parametrize(("history", "stage", "why"), [
    (signed_off_twice(), Stage.SHIPMENT,
     "has not reached SHIPMENT (stages so far: REQUESTED, ALLY_SIGNOFF, US_REVIEW)"),
    (signed_off_twice(), Stage.REQUESTED, "not a stage a reset can go back to"),
    (signed_off_twice(), Stage.BACKFILL, "not a stage a reset can go back to"),
    (signed_off_twice().stage(Stage.SHIPMENT), Stage.SHIPMENT, "has only just entered SHIPMENT"),
    (signed_off_twice().stage(Stage.SHIPMENT).task().signal("shipment_departed").task(), Stage.US_REVIEW,
     "a shipment leg has left, which is irreversible"),
])
def test_refused(history: History, stage: Stage, why: str) -> None:
    with pytest.raises(ResetRefused, match=why.replace("(", r"\(").replace(")", r"\)")):
        reset_point("TPT-X", history.events, stage)
