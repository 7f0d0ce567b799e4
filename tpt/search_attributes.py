"""Typed search attributes the Temporal UI filters on (DESIGN.md §3). Plain text in Temporal: never secrets."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

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
