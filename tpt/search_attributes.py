"""Typed search attributes the Temporal UI filters on (DESIGN.md §3). Plain text in Temporal: never secrets."""

from __future__ import annotations

from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode

TRANSFER_STAGE = SearchAttributeKey.for_keyword("TransferStage")
DONOR_NATION = SearchAttributeKey.for_keyword("DonorNation")
RECIPIENT = SearchAttributeKey.for_keyword("Recipient")
USML_CATEGORIES = SearchAttributeKey.for_keyword_list("UsmlCategories")
TOTAL_VALUE_USD = SearchAttributeKey.for_float("TotalValueUsd")
APPROVAL_ROUTE = SearchAttributeKey.for_keyword("ApprovalRoute")
CONGRESSIONAL_REVIEW = SearchAttributeKey.for_keyword("CongressionalReview")
PRIORITY = SearchAttributeKey.for_keyword("Priority")
NEEDS_ATTENTION = SearchAttributeKey.for_bool("NeedsAttention")
BLOCKED_REASON = SearchAttributeKey.for_text("BlockedReason")

ALL = (
    TRANSFER_STAGE,
    DONOR_NATION,
    RECIPIENT,
    USML_CATEGORIES,
    TOTAL_VALUE_USD,
    APPROVAL_ROUTE,
    CONGRESSIONAL_REVIEW,
    PRIORITY,
    NEEDS_ATTENTION,
    BLOCKED_REASON,
)

# Names the `temporal server start-dev --search-attribute NAME=TYPE` flag expects.
_CLI_TYPE = {
    "KEYWORD": "Keyword",
    "KEYWORD_LIST": "KeywordList",
    "DOUBLE": "Double",
    "BOOL": "Bool",
    "TEXT": "Text",
    "INT": "Int",
    "DATETIME": "Datetime",
}


def dev_server_flags() -> list[str]:
    flags: list[str] = []
    for key in ALL:
        kind = key.indexed_value_type.name.removeprefix("INDEXED_VALUE_TYPE_")
        flags += ["--search-attribute", f"{key.name}={_CLI_TYPE[kind]}"]
    return flags


async def register(client: Client, namespace: str) -> list[str]:
    """Register any of our attributes the server lacks (for servers not started with `dev_server_flags`)."""
    try:
        listed = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
        existing = set(listed.custom_attributes)
    except RPCError as err:  # the time-skipping test server can add attributes but not list them
        if err.status is not RPCStatusCode.UNIMPLEMENTED:
            raise
        existing = set()
    missing = {key.name: key.indexed_value_type for key in ALL if key.name not in existing}
    if missing:
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)  # type: ignore[arg-type]
            )
        except RPCError as err:
            if err.status is not RPCStatusCode.ALREADY_EXISTS:
                raise
    return sorted(missing)
