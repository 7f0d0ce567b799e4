"""The Markdown the Temporal UI shows as a transfer's current details: where it is and whom it waits for."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from tpt.contract import TransferRequest
    from tpt.messages import TransferStatus
    from tpt.stages import PATH, Stage


def _checklist(status: TransferStatus) -> list[str]:
    lines, reached = [], True
    for stage in PATH:
        if stage is Stage.CONGRESSIONAL_REVIEW and not (status.policy and status.policy.notification_required):
            continue
        current = stage is status.stage
        mark = "▶" if current else ("✓" if reached else "·")
        lines.append(f"- {mark} {'**' + stage.value + '**' if current else stage.value}")
        reached = reached and not current
    if status.stage.is_terminal and status.stage is not Stage.COMPLETED:
        lines.append(f"- ended: **{status.stage.value}** — {status.outcome_reason or ''}")
    return lines


def request_details(request: TransferRequest) -> str:
    """Static details shown from the start: what is transferred, by whom, for what."""
    lines = [f"**{request.donor} → {request.recipient}** · {request.kind.value.lower()} · {request.priority.value}",
             f"End user: {request.end_user}", f"End use: {request.end_use}",
             f"Origin: {request.origin.value} {request.fms_case or request.export_licence or ''}",
             f"Requested by: {request.requested_by}", "", "| NSN | item | USML | qty | unit USD | flags |",
             "|---|---|---|---|---|---|"]
    for item in request.items:
        flags = ", ".join(f for f, on in (("SME", item.sme), ("MDE", item.mde), ("EEUM", item.eeum)) if on)
        lines.append(f"| {item.nsn} | {item.nomenclature} | {item.usml_category} | {item.quantity} | "
                     f"{item.unit_value_usd:,.0f} | {flags} |")
    return "\n".join(lines)


def render(status: TransferStatus) -> str:
    lines = [f"### {status.transfer_id}: {status.donor} → {status.recipient}", "",
             f"**Stage:** {status.stage.value} since {status.stage_entered_at:%Y-%m-%d %H:%M} UTC", ""]
    lines += _checklist(status)
    if status.needs_attention:
        lines += ["", f"> ⚠ **Needs attention:** {status.blocked_reason}"]
    if status.awaiting:
        lines += ["", "**Awaiting:**"] + [f"- {item}" for item in status.awaiting]
    if status.signatures:
        lines += ["", "**Signatures:**"] + [
            f"- {s.role}: {s.signer} — {'approved' if s.approve else 'REJECTED'} {s.at:%Y-%m-%d %H:%M}"
            for s in status.signatures
        ]
    if status.policy:
        p = status.policy
        notice = f"required ({p.review_days} days)" if p.notification_required else "not required"
        lines += ["", f"**Route:** {p.route.value} · **policy** {p.policy_version} · **notification:** {notice}"
                  f" · **framework:** {p.framework_id or 'none'}{' (fast track)' if p.fast_track else ''}"]
    if status.congressional_review_ends:
        lines.append(f"**Congressional review:** {status.congressional_review} until "
                     f"{status.congressional_review_ends:%Y-%m-%d %H:%M} UTC")
    if status.eeum_inventory_due:
        done = "done" if status.eeum_inventory_done else f"due {status.eeum_inventory_due:%Y-%m-%d}"
        lines.append(f"**EEUM initial inventory:** {done}")
    lines += ["", f"request v{status.request_version} · digest `{status.request_digest[:16]}…` · "
              f"{status.audit_events} audit events"]
    return "\n".join(lines)
