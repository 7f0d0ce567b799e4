"""Bounded text types for everything people type into a decision: names, reasons, comments.

Why bounds: each decision is a Temporal payload (refused over 2 MB) and an audit row (Postgres refuses U+0000 in
text and jsonb). A decision that cannot be recorded must be refused by its model, before it reaches a workflow.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

NAME_MAX = 200  # an actor id, an office, a leg, a party
NOTE_MAX = 4000  # a comment, reason, justification or citation: a page of text
LIST_MAX = 100  # provisos and the like

# C0 controls except tab, newline and carriage return, plus DEL: never meaningful in a record, and U+0000 breaks it.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def no_control_characters(value: str) -> str:
    found = _CONTROL.search(value)
    if found:
        code = f"U+{ord(found.group()):04X}"
        raise PydanticCustomError(
            "control_character",
            f"contains the control character {code} at position {found.start()}, which cannot be recorded; remove it")
    return value


def _single_line(value: str) -> str:
    text = no_control_characters(value.strip())
    if "\n" in text or "\r" in text or "\t" in text:
        raise PydanticCustomError("single_line", "must be one line; remove the line breaks and tabs")
    if not text:
        raise PydanticCustomError("blank", "must not be blank; give a value")
    return text


Name = Annotated[str, Field(min_length=1, max_length=NAME_MAX), AfterValidator(_single_line)]
Note = Annotated[str, Field(max_length=NOTE_MAX), AfterValidator(no_control_characters)]

