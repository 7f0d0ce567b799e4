"""The size a request or decision may have, checked before anything is sent.

Temporal refuses a payload over 2 MB (and a gRPC message over 4 MB) only once the workflow already exists or the
update already reached it; checking here means a refusal names the limit and nothing is left half-started.
"""

from __future__ import annotations

from pydantic import BaseModel

from tpt.errors import TransferValidationError

MAX_PAYLOAD_BYTES = 1_500_000  # under Temporal's 2 MB, leaving room for the workflow's own fields and headers


class PayloadTooLarge(TransferValidationError):
    def __init__(self, what: str, size: int):
        self.size = size
        super().__init__([(what, f"is {size / 1e6:.1f} MB of JSON, larger than the {MAX_PAYLOAD_BYTES / 1e6:.1f} MB "
                                 "limit (Temporal refuses payloads over 2 MB); split the articles over several "
                                 "transfers, or shorten the text")])


def check_size(what: str, message: BaseModel) -> None:
    size = len(message.model_dump_json().encode())
    if size > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(what, size)
