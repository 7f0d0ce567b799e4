"""Reading a transfer request from a JSON or YAML file, with every problem named by its field path."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tpt.contract import TransferRequest
from tpt.errors import TransferValidationError

YAML_SUFFIXES = (".yaml", ".yml")


class _RequestLoader(yaml.SafeLoader):
    """YAML without its two traps for requests: floats stay exact (money), and `NO` stays Norway, not False."""


def _exact_number(loader: yaml.SafeLoader, node: yaml.Node) -> Decimal:
    return Decimal(str(loader.construct_scalar(node)).replace("_", ""))  # type: ignore[arg-type]


def _strict_bool(loader: yaml.SafeLoader, node: yaml.Node) -> bool | str:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    return {"true": True, "false": False}.get(text.lower(), text)


_RequestLoader.add_constructor("tag:yaml.org,2002:float", _exact_number)
_RequestLoader.add_constructor("tag:yaml.org,2002:bool", _strict_bool)


def load_request(path: Path) -> TransferRequest:
    """The validated request in `path` (YAML by suffix, JSON otherwise); raises TransferValidationError."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise TransferValidationError([("request", f"cannot read {path}: {err}")]) from err
    if path.suffix.lower() in YAML_SUFFIXES:
        return parse_request(_yaml(text, path))
    try:
        return TransferRequest.model_validate_json(text)
    except ValidationError as err:
        raise TransferValidationError.from_pydantic(err) from err


def parse_request(data: Any) -> TransferRequest:
    """A request from already-parsed data (a mapping), or the request itself."""
    if isinstance(data, TransferRequest):
        return data
    try:
        return TransferRequest.model_validate(data)
    except ValidationError as err:
        raise TransferValidationError.from_pydantic(err) from err


def _yaml(text: str, path: Path) -> Any:
    try:
        return yaml.load(text, Loader=_RequestLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise TransferValidationError([("request", f"{path.name} is not valid YAML{where}: "
                                                   f"{getattr(err, 'problem', None) or err}")]) from err
