"""Deterministic workflow ids (DESIGN.md §4): the transfer's id, and its children's derived from it."""

from __future__ import annotations

_CHILD_SUFFIXES = ("-shipment", "-backfill")


def shipment_id(transfer_id: str) -> str:
    return f"{transfer_id}-shipment"


def backfill_id(transfer_id: str) -> str:
    return f"{transfer_id}-backfill"


def transfer_id_of(workflow_id: str) -> str:
    """The transfer a workflow belongs to (itself, or its parent for shipment and backfill)."""
    for suffix in _CHILD_SUFFIXES:
        if workflow_id.endswith(suffix):
            return workflow_id.removesuffix(suffix)
    return workflow_id
