"""The stages a transfer walks, and its terminal exits (DESIGN.md §2)."""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    REQUESTED = "REQUESTED"
    ALLY_SIGNOFF = "ALLY_SIGNOFF"
    US_REVIEW = "US_REVIEW"
    CONGRESSIONAL_REVIEW = "CONGRESSIONAL_REVIEW"
    SHIPMENT = "SHIPMENT"
    BACKFILL = "BACKFILL"
    COMPLETED = "COMPLETED"
    REJECTED = "REJECTED"
    DENIED = "DENIED"
    BLOCKED = "BLOCKED"
    WITHDRAWN = "WITHDRAWN"
    EXPIRED = "EXPIRED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STAGES


TERMINAL_STAGES = frozenset(
    {Stage.COMPLETED, Stage.REJECTED, Stage.DENIED, Stage.BLOCKED, Stage.WITHDRAWN, Stage.EXPIRED}
)

# The happy path, in order; CONGRESSIONAL_REVIEW is entered only when notification is required.
PATH = (
    Stage.REQUESTED,
    Stage.ALLY_SIGNOFF,
    Stage.US_REVIEW,
    Stage.CONGRESSIONAL_REVIEW,
    Stage.SHIPMENT,
    Stage.BACKFILL,
    Stage.COMPLETED,
)
