"""How the `tpt` command shows a transfer: the stage checklist, one line per change, the list of transfers."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tpt.messages import TransferStatus
from tpt.stages import PATH, Stage
from tpt.visibility import TransferSummary

# Where a transfer stood when it ended early (WITHDRAWN can happen anywhere before departure: not marked).
_ENDED_AT = {Stage.REJECTED: Stage.ALLY_SIGNOFF, Stage.EXPIRED: Stage.ALLY_SIGNOFF, Stage.DENIED: Stage.US_REVIEW,
             Stage.BLOCKED: Stage.CONGRESSIONAL_REVIEW}
_STYLE = {"✔": "green", "▶": "bold yellow", "✘": "bold red", "·": "dim", " ": "dim"}


def checklist(status: TransferStatus) -> RenderableType:
    """The stages as a checklist with who signed and decided, then what is awaited and how it ended."""
    grid = Table.grid(padding=(0, 1))
    for mark, stage in _marked_path(status):
        grid.add_row(Text(mark, style=_STYLE[mark]), Text(stage.value, style=_STYLE[mark] if mark != "✔" else ""),
                     Text(_detail(status, stage)))
    return Group(Text(_heading(status), style="bold"), grid, *_footer(status))


def change_line(status: TransferStatus, at: datetime) -> str:
    """One line per change for logs and pipes: the stage is always the second field."""
    return f"[{at:%H:%M:%S}] {status_line(status)}"


def status_line(status: TransferStatus) -> str:
    """The stage, who signed, what is awaited and how it ended, on one line."""
    parts = [status.stage.value]
    if status.signatures:
        parts.append("signed " + _signatures(status))
    if status.awaiting:
        parts.append("awaiting " + "; ".join(status.awaiting))
    if status.needs_attention:
        parts.append(f"NEEDS ATTENTION: {status.blocked_reason}")
    if status.outcome_reason:
        parts.append(status.outcome_reason)
    return " · ".join(parts)


def summary_lines(summaries: Iterable[TransferSummary]) -> list[str]:
    lines = [f"{'TRANSFER':<24} {'STAGE':<21} {'ROUTE':<8} {'DONOR→RECIPIENT':<16} {'VALUE USD':>15}  STARTED"]
    for s in summaries:
        value = f"{s.total_value_usd:,.0f}" if s.total_value_usd is not None else "?"
        flag = "  NEEDS ATTENTION: " + (s.blocked_reason or "") if s.needs_attention else ""
        lines.append(f"{s.transfer_id:<24} {(s.stage or '?'):<21} {s.route or '-':<8} "
                     f"{f'{s.donor}→{s.recipient}':<16} {value:>15}  {s.started_at:%Y-%m-%d %H:%M}{flag}")
    return lines if len(lines) > 1 else ["no transfer matches"]


def _heading(status: TransferStatus) -> str:
    route = f" via {status.policy.route.value}" if status.policy else ""
    return (f"{status.transfer_id}  {status.donor} → {status.recipient}{route}  "
            f"(request v{status.request_version}, {status.audit_events} audit events)")


def _marked_path(status: TransferStatus) -> list[tuple[str, Stage]]:
    skip_congress = status.policy is not None and not status.policy.notification_required
    path = [s for s in PATH if not (s is Stage.CONGRESSIONAL_REVIEW and skip_congress)]
    stop = status.stage if status.stage in path else _ENDED_AT.get(status.stage)
    if stop is None:
        return [(" ", stage) for stage in path]
    here = path.index(stop)
    done = status.stage is Stage.COMPLETED
    current = "✘" if status.stage.is_terminal and not done else "▶"
    return [("✔" if i < here or done else current if i == here else "·", s) for i, s in enumerate(path)]


def _detail(status: TransferStatus, stage: Stage) -> str:
    when = "at" if status.stage.is_terminal else "since"
    since = f"{when} {status.stage_entered_at:%Y-%m-%d %H:%M} UTC" if stage is status.stage else ""
    detail = {
        Stage.ALLY_SIGNOFF: lambda: _signatures(status) if status.signatures else "",
        Stage.US_REVIEW: lambda: _us_review(status),
        Stage.CONGRESSIONAL_REVIEW: lambda: status.congressional_review,
        Stage.SHIPMENT: lambda: f"delivered {status.delivered_at:%Y-%m-%d}" if status.delivered_at else
        ("under way" if status.shipment_departed else ""),
        Stage.BACKFILL: lambda: f"{status.backfill_replaced}/{status.backfill_required} replaced"
        if status.stage in (Stage.BACKFILL, Stage.COMPLETED) else "",
    }.get(stage, lambda: "")()
    return "  ".join(part for part in (detail, since) if part)


def _signatures(status: TransferStatus) -> str:
    approved = sum(1 for s in status.signatures if s.approve)
    votes = ", ".join(f"{s.role} {s.signer} {'approved' if s.approve else 'REJECTED'}" for s in status.signatures)
    return f"{approved}/{status.quorum}: {votes}"


def _us_review(status: TransferStatus) -> str:
    if status.consent_by_framework:
        return f"consent by framework {status.consent_by_framework}"
    us = status.us_decision
    if us is None:
        return ""
    provisos = f" with provisos: {'; '.join(us.provisos)}" if us.provisos else ""
    return f"{us.outcome.value} by {us.reviewer} ({us.office}){provisos}"


def _footer(status: TransferStatus) -> list[Text]:
    lines = [Text(f"awaiting: {item}", style="yellow") for item in status.awaiting]
    if status.eeum_inventory_due and not status.eeum_inventory_done:
        lines.append(Text(f"EEUM initial inventory due {status.eeum_inventory_due:%Y-%m-%d}"))
    if status.needs_attention:
        lines.append(Text(f"NEEDS ATTENTION: {status.blocked_reason}", style="bold red"))
    if status.stage.is_terminal:
        style = "bold green" if status.stage is Stage.COMPLETED else "bold red"
        lines.append(Text(f"{status.stage.value}: {status.outcome_reason or ''}", style=style))
    return lines
