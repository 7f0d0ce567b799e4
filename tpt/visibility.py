"""Finding transfers through Temporal visibility: the list query, and the small summary of each match."""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel, ConfigDict
from temporalio.client import WorkflowExecution

from tpt import search_attributes as sa
from tpt.errors import TransferValidationError
from tpt.stages import Stage

WORKFLOW_TYPE = "TransferWorkflow"
_NATION = re.compile(r"^[A-Z]{2}$")


class TransferSummary(BaseModel):
    """One transfer as visibility knows it: the search attributes, without querying the workflow."""

    model_config = ConfigDict(frozen=True)

    transfer_id: str
    stage: Stage | None
    donor: str | None
    recipient: str | None
    total_value_usd: float | None
    usml_categories: list[str]
    priority: str | None
    route: str | None
    congressional_review: str | None
    needs_attention: bool
    blocked_reason: str | None
    started_at: datetime
    closed_at: datetime | None
    execution_status: str


def transfer_query(stage: Stage | None = None, donor: str | None = None, recipient: str | None = None,
                   needs_attention: bool | None = None) -> str:
    """A visibility query over transfer workflows; nation codes are checked, so nothing is injected."""
    clauses = [f'WorkflowType = "{WORKFLOW_TYPE}"']
    if stage is not None:
        clauses.append(f'{sa.TRANSFER_STAGE.name} = "{Stage(stage).value}"')
    for key, field, value in ((sa.DONOR_NATION, "donor", donor), (sa.RECIPIENT, "recipient", recipient)):
        if value is not None:
            clauses.append(f'{key.name} = "{_nation(field, value)}"')
    if needs_attention is not None:
        clauses.append(f"{sa.NEEDS_ATTENTION.name} = {str(needs_attention).lower()}")
    return " AND ".join(clauses)


def summarize(execution: WorkflowExecution) -> TransferSummary:
    attrs = execution.typed_search_attributes
    stage = attrs.get(sa.TRANSFER_STAGE)
    return TransferSummary(
        transfer_id=execution.id, stage=Stage(stage) if stage else None, donor=attrs.get(sa.DONOR_NATION),
        recipient=attrs.get(sa.RECIPIENT), total_value_usd=attrs.get(sa.TOTAL_VALUE_USD),
        usml_categories=list(attrs.get(sa.USML_CATEGORIES) or []), priority=attrs.get(sa.PRIORITY),
        route=attrs.get(sa.APPROVAL_ROUTE), congressional_review=attrs.get(sa.CONGRESSIONAL_REVIEW),
        needs_attention=bool(attrs.get(sa.NEEDS_ATTENTION)), blocked_reason=attrs.get(sa.BLOCKED_REASON),
        started_at=execution.start_time, closed_at=execution.close_time,
        execution_status=execution.status.name if execution.status else "UNKNOWN",
    )


def _nation(field: str, value: str) -> str:
    code = value.strip().upper()
    if not _NATION.match(code):
        raise TransferValidationError([(field, f"'{value}' is not a two-letter nation code, e.g. 'DE' or 'UA'")])
    return code
