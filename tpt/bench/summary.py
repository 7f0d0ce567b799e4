"""The one table of `tpt bench`: each figure beside the issue's target (issue 9), all measured in the same run."""

from __future__ import annotations

from tpt.bench.audit import Result
from tpt.bench.latency import LatencyResult
from tpt.bench.scale import ScaleResult
from tpt.bench.throughput import ThroughputResult

RSS_TARGET_MIB = 1024
TARGET_OPEN = 10_000
_COLUMNS = (("scenario", 30), ("measured (ours vs baseline: ratio)", 52), ("target", 30), ("met", 0))


def _met(ok: bool) -> str:
    return "yes" if ok else "NO"


def summary_rows(tp: ThroughputResult, lat: LatencyResult, audit: Result, sc: ScaleResult) -> list[dict[str, str]]:
    bare_p99 = lat.bare_round_trip.p99
    rss_ok = sc.peak_rss_mib <= RSS_TARGET_MIB
    if sc.open >= TARGET_OPEN:
        rss_met = _met(rss_ok)
    else:  # not the target's size: say so rather than claim it
        rss_met = f"{_met(rss_ok)} at {sc.open:,}; 10,000 not run"
    return [
        {"scenario": "throughput, transfers/s",
         "figure": f"{tp.ours.per_second:.2f} vs bare {tp.bare.per_second:.2f}: {tp.ratio:.2f}",
         "target": "≥ 0.80 of bare", "met": _met(tp.ratio >= 0.8)},
        {"scenario": "decision → visible p99, ms",
         "figure": f"{lat.visible.p99:.0f} vs bare update {bare_p99:.0f}: {lat.ratio_p99:.2f}×",
         "target": "≤ 2× bare update round trip", "met": _met(lat.ratio_p99 <= 2.0)},
        {"scenario": "audit appends/s",
         "figure": f"{audit.chained.per_second:.0f} vs plain {audit.plain.per_second:.0f}: {audit.ratio:.2f}",
         "target": "≥ 0.70 of plain inserts", "met": _met(audit.ratio >= 0.7)},
        {"scenario": f"worker RSS, {sc.open:,} waiting",
         "figure": f"{sc.rss_mib:.0f} MiB (peak {sc.peak_rss_mib:.0f}; cache {sc.max_cached_workflows})",
         "target": f"≤ {RSS_TARGET_MIB} MiB at {TARGET_OPEN:,} waiting", "met": rss_met},
        {"scenario": "restarted worker → decision",
         "figure": f"{sc.restart_to_decision_seconds:.1f} s (ready {sc.restart_ready_seconds:.1f} s)",
         "target": "(reported, no target)", "met": "-"},
    ]


def summary_table(rows: list[dict[str, str]]) -> list[str]:
    keys = ("scenario", "figure", "target", "met")

    def line(values: list[str]) -> str:
        return "".join(f"{v:<{w}}" if w else v for v, (_, w) in zip(values, _COLUMNS, strict=True)).rstrip()

    return [line([title for title, _ in _COLUMNS])] + [line([row[k] for k in keys]) for row in rows]
