"""How long a transfer may stay in each stage before `tpt ops stuck` lists it (a service level, not a rule).

The deadlines a transfer enforces itself (reminders, expiry: `Deadlines` in tpt/messages.py) are part of its
workflow input; these are the operations team's expectations, kept here as data and overridable without a release:
`TPT_OPS_SLA="ALLY_SIGNOFF=10d,US_REVIEW=2w"` or `tpt ops stuck --sla US_REVIEW=3d` (`none` turns one off).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from datetime import timedelta

from tpt.stages import Stage

ENV = "TPT_OPS_SLA"

DEFAULT_SLAS: Mapping[Stage, timedelta | None] = {
    # Policy evaluation takes seconds: an hour in REQUESTED means no worker is running the transfer.
    Stage.REQUESTED: timedelta(hours=1),
    # Past the 5-day sign-off reminder and a working week later still unsigned; expiry comes at 30 days.
    Stage.ALLY_SIGNOFF: timedelta(days=10),
    # GAO (2024): TPT authorizations for Ukraine averaged about 12 days after receipt.
    Stage.US_REVIEW: timedelta(days=12),
    # The statutory period is 30 calendar days at most; past it (plus a day) the timer should have fired.
    Stage.CONGRESSIONAL_REVIEW: timedelta(days=31),
    # Depot to the receiving unit through the hub, with the security cooperation offices told at delivery.
    Stage.SHIPMENT: timedelta(days=21),
    # Months to years by design (letters of offer, deliveries): never late for its age alone.
    Stage.BACKFILL: None,
}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class SlaError(ValueError):
    pass


def parse_duration(text: str) -> timedelta | None:
    """`90s`, `15m`, `12h`, `10d`, `2w`; `none` or `off`: no SLA."""
    if text.strip().lower() in ("none", "off"):
        return None
    found = _DURATION.match(text)
    if not found:
        raise SlaError(f"'{text}' is not a duration: use a number and s, m, h, d or w (e.g. 10d), or none")
    return timedelta(**{_UNITS[found.group(2)]: float(found.group(1))})


def parse_overrides(items: Iterable[str]) -> dict[Stage, timedelta | None]:
    """`STAGE=DURATION` items (each may itself be a comma-separated list)."""
    found: dict[Stage, timedelta | None] = {}
    for item in (part for entry in items for part in entry.split(",") if part.strip()):
        name, sep, value = item.partition("=")
        if not sep:
            raise SlaError(f"'{item}' is not STAGE=DURATION (e.g. US_REVIEW=12d)")
        try:
            stage = Stage(name.strip().upper())
        except ValueError:
            raise SlaError(f"'{name.strip()}' is not a stage; stages with an SLA: "
                           f"{', '.join(s.value for s in DEFAULT_SLAS)}") from None
        if stage not in DEFAULT_SLAS:
            raise SlaError(f"{stage.value} is a final stage: it has no SLA")
        found[stage] = parse_duration(value)
    return found


def stage_slas(overrides: Iterable[str] = ()) -> dict[Stage, timedelta | None]:
    """The defaults, then TPT_OPS_SLA, then the given overrides."""
    env = os.environ.get(ENV, "")
    return {**DEFAULT_SLAS, **parse_overrides([env] if env else []), **parse_overrides(overrides)}


def describe(span: timedelta) -> str:
    """`3d 4h`, `5h 12m`, `42s`: the two largest units."""
    seconds = max(int(span.total_seconds()), 0)
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")) if n]
    return " ".join(parts[:2]) or "0s"
