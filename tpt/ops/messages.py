"""What `tpt ops` sends a workflow about actions Temporal took on an operator's behalf (the workflow cannot see them).

Pausing, unpausing or resetting an activity and resetting the workflow itself happen in Temporal, outside the
workflow's code; the operator's identity and reason reach the audit history through an `ops_note` update to the
transfer workflow, sent right after the action succeeded.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from tpt.text import Name, Note


class OpsNoteKind(StrEnum):
    RESET = "RESET"  # the workflow was reset to the start of a stage (recorded by the run the reset created)
    PAUSE_ACTIVITY = "PAUSE_ACTIVITY"
    UNPAUSE_ACTIVITY = "UNPAUSE_ACTIVITY"
    RESET_ACTIVITY = "RESET_ACTIVITY"


class OpsNote(BaseModel):
    """An operator's action taken through Temporal, for the audit history: event type `OPS_<kind>`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: OpsNoteKind
    operator: Name
    reason: Note = Field(min_length=3)
    details: dict[str, str | int | None] = Field(default_factory=dict, max_length=20)
