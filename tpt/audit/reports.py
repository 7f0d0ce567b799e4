"""What a reviewer asks of the audit database: which transfers sit where, and how long stages take."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import asyncpg

from tpt.stages import PATH, TERMINAL_STAGES, Stage

_TRANSFERS = """
SELECT transfer_id, stage, donor, recipient, total_value_usd, priority, needs_attention, created_at, stage_entered_at
FROM transfers
WHERE ($1::text IS NULL OR stage = $1)
  AND ($2::text IS NULL OR donor = $2)
  AND ($3::timestamptz IS NULL OR created_at < $3)
ORDER BY created_at, transfer_id
"""

# A stage is entered by the first event recorded in it (STAGE_ENTERED, or the request for REQUESTED) and
# left when the next stage is entered; a stage still open counts up to `now`. Terminal stages never end,
# so they have no duration.
_SLA = """
WITH marked AS (
    SELECT transfer_id, seq, stage, workflow_time,
           stage IS DISTINCT FROM lag(stage) OVER (PARTITION BY transfer_id ORDER BY seq) AS entered
    FROM audit_events
), spans AS (
    SELECT stage, workflow_time AS entered_at,
           lead(workflow_time) OVER (PARTITION BY transfer_id ORDER BY seq) AS left_at
    FROM marked WHERE entered
), durations AS (
    SELECT stage, left_at IS NULL AS open,
           extract(epoch FROM coalesce(left_at, $1) - entered_at)::float8 AS seconds
    FROM spans WHERE left_at IS NOT NULL OR stage <> ALL($2::text[])
)
SELECT stage, count(*) AS count, count(*) FILTER (WHERE open) AS open,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS median,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds) AS p90,
       max(seconds) AS max
FROM durations GROUP BY stage
"""


@dataclass(frozen=True)
class TransferLine:
    transfer_id: str
    stage: str
    donor: str | None
    recipient: str | None
    total_value_usd: Decimal | None
    priority: str | None
    needs_attention: bool
    created_at: datetime
    stage_entered_at: datetime
    age_days: float
    in_stage_days: float


@dataclass(frozen=True)
class StageTime:
    stage: str
    count: int  # stage visits measured, open ones included
    open: int  # visits still in progress, measured up to now
    median_seconds: float
    p90_seconds: float
    max_seconds: float


async def transfers(conn: asyncpg.Connection, now: datetime, stage: str | None = None, donor: str | None = None,
                    older_than: timedelta | None = None) -> list[TransferLine]:
    """Transfers from the projection, oldest first; filters combine."""
    before = now - older_than if older_than is not None else None
    records = await conn.fetch(_TRANSFERS, stage, donor, before)
    return [TransferLine(**dict(r), age_days=_days(now - r["created_at"]),
                         in_stage_days=_days(now - r["stage_entered_at"])) for r in records]


async def stage_times(conn: asyncpg.Connection, now: datetime) -> list[StageTime]:
    """Time spent in each stage across all transfers, in the order a transfer walks the stages."""
    records = await conn.fetch(_SLA, now, sorted(s.value for s in TERMINAL_STAGES))
    times = [StageTime(r["stage"], r["count"], r["open"], r["median"], r["p90"], r["max"]) for r in records]
    return sorted(times, key=lambda t: _stage_order(t.stage))


def _stage_order(stage: str) -> tuple[int, str]:
    order = [*PATH, *(s for s in Stage if s not in PATH)]
    return (order.index(Stage(stage)), stage) if stage in Stage.__members__ else (len(order), stage)


def _days(delta: timedelta) -> float:
    return round(delta.total_seconds() / 86400, 2)
