"""What the deployment tests read: the repository's compose file, manifests and Helm values, parsed once."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tpt import search_attributes
from tpt.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"

# Temporal CLI `--type` names for each indexed value type.
CLI_TYPES = {"KEYWORD": "Keyword", "KEYWORD_LIST": "KeywordList", "DOUBLE": "Double", "BOOL": "Bool",
             "TEXT": "Text", "INT": "Int", "DATETIME": "Datetime"}

_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?[-?][^}]*)?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:?msg} and ${VAR:-default}, resolved from `env` (a test's .env)."""
    return _INTERPOLATION.sub(lambda m: env[m.group(1)], value)


def variables(value: str) -> set[str]:
    return set(_INTERPOLATION.findall(value))


def expected_search_attributes() -> dict[str, str]:
    return {key.name: CLI_TYPES[key.indexed_value_type.name.removeprefix("INDEXED_VALUE_TYPE_")]
            for key in search_attributes.ALL}


def parse_search_attributes(value: str) -> dict[str, str]:
    """`Name=Type Name=Type …` as the setup jobs take it."""
    pairs = [item.split("=", 1) for item in shlex.split(value)]
    assert all(len(p) == 2 for p in pairs), f"not Name=Type pairs: {value!r}"
    names = [p[0] for p in pairs]
    assert len(names) == len(set(names)), f"an attribute is listed twice: {names}"
    return dict(pairs)  # type: ignore[arg-type]


def setting_names() -> set[str]:
    return {f"TPT_{name.upper()}" for name in Settings.model_fields}


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings exactly as a process with this environment (and nothing else TPT_*) would load them."""
    import os

    for key in [k for k in os.environ if k.startswith("TPT_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


def image_is_pinned(image: str) -> bool:
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest") and any(c.isdigit() for c in tag)


@pytest.fixture(scope="session")
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="session")
def dotenv_example() -> dict[str, str]:
    entries = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            entries[key.strip()] = value.strip()
    return entries


@pytest.fixture(scope="session")
def manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


@pytest.fixture(scope="session")
def helm_values() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "deploy" / "helm" / "temporal-values.yaml").read_text())


def find(manifests: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]
