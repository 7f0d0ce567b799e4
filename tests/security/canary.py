"""What the tests look for in Temporal: a request full of canary values, and the raw history as Temporal stores it."""

from __future__ import annotations

import json
import random
import string
import uuid
from collections.abc import Iterator
from typing import Any

from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload, WorkflowExecution
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryRequest
from temporalio.client import Client

from tpt.contract import TransferRequest

from ..workflow.conftest import EXAMPLES

PAYLOAD = "temporal.api.common.v1.Payload"


def canary_request() -> tuple[TransferRequest, list[str]]:
    """The Javelin example with unmistakable sensitive values, and the strings that must never reach Temporal."""
    tag = uuid.uuid4().hex[:8].upper()
    data = json.loads((EXAMPLES / "javelin-lt.json").read_text())
    unit = f"Canary Mechanized Brigade {tag}"
    serials = [f"CANARY-{tag}-SN{n:03d}" for n in range(6)]
    data |= {"transfer_id": f"TPT-SEC-{tag}", "end_user": unit, "end_use": f"Canary end use {tag}",
             "fms_case": "LH-B-" + "".join(random.choices(string.ascii_uppercase, k=3)),
             "requested_by": f"canary.{tag.lower()}@kam.lt"}
    data["items"][0] |= {"serials": serials, "nomenclature": f"Canary guided missile {tag}"}
    request = TransferRequest.model_validate(data)
    secrets = [*serials, unit, data["end_use"], data["fms_case"], data["requested_by"],
               data["items"][0]["nomenclature"], "line item(s)"]  # the static summary too: it is a payload
    return request, secrets


async def raw_history(client: Client, workflow_id: str) -> list[HistoryEvent]:
    """The history exactly as Temporal stores it: the raw service, no data converter in the way."""
    events: list[HistoryEvent] = []
    token = b""
    while True:
        page = await client.workflow_service.get_workflow_execution_history(GetWorkflowExecutionHistoryRequest(
            namespace=client.namespace, execution=WorkflowExecution(workflow_id=workflow_id),
            next_page_token=token, maximum_page_size=500))
        events.extend(page.history.events)
        token = page.next_page_token
        if not token:
            return events


def payloads_in(message: Message, path: str = "") -> Iterator[tuple[str, Payload]]:
    """Every Payload inside a proto message, with the field path it sits at."""
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        where = f"{path}.{field.name}"
        if field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            if value_field.message_type is None:
                continue
            items: list[tuple[str, Any]] = [(f"{where}[{k}]", v) for k, v in value.items()]
            kind = value_field.message_type.full_name
        elif field.is_repeated:
            items, kind = [(f"{where}[{i}]", v) for i, v in enumerate(value)], field.message_type.full_name
        else:
            items, kind = [(where, value)], field.message_type.full_name
        for item_path, item in items:
            if kind == PAYLOAD:
                yield item_path, item
            else:
                yield from payloads_in(item, item_path)


def is_search_attribute(path: str) -> bool:
    return ".search_attributes.indexed_fields[" in path


def outside_the_codec(path: str) -> bool:
    """Payloads Temporal never passes through a codec: search attributes (non-sensitive by design, checked for
    content) and the SDK core's own marker bookkeeping: patch ids (`workflow.patched`, code names) and a local
    activity's sequence number, type and times (its *result* is a codec payload like any other)."""
    return is_search_attribute(path) or any(f".marker_recorded_event_attributes.details[{name}]" in path
                                            for name in ("patch-data", "data"))
