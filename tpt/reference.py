"""Nation reference data (ISO 3166-1 alpha-2 codes, names, NATO membership), kept as data in
`tpt/data/nations.json`.

Workflows import this module through `workflow.unsafe.imports_passed_through()`: the file is read once, on
first use, and cached for the life of the process, so every later call is pure.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from importlib.resources import files
from types import MappingProxyType

from pydantic import BaseModel, ConfigDict, Field


class Nation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 code")
    name: str = Field(min_length=1)
    nato: bool


class _NationsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    as_of: str
    note: str = ""
    nations: list[Nation]


@functools.cache
def nations() -> Mapping[str, Nation]:
    """All nations in the reference data, by code (read-only)."""
    raw = (files("tpt") / "data" / "nations.json").read_text(encoding="utf-8")
    loaded = _NationsFile.model_validate(json.loads(raw))
    by_code = {n.code: n for n in loaded.nations}
    if len(by_code) != len(loaded.nations):
        raise ValueError("tpt/data/nations.json lists a nation code twice")
    return MappingProxyType(by_code)


def nation(code: str) -> Nation | None:
    """The nation with this code (case-insensitive), or None when the reference data does not know it."""
    return nations().get(code.strip().upper())


def is_known(code: str) -> bool:
    return nation(code) is not None


def is_nato(code: str) -> bool:
    found = nation(code)
    return found is not None and found.nato
