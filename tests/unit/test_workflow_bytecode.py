"""The worker writes the workflow modules' bytecode, which the sandbox would otherwise compile per instance."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import workflows
from workers.bytecode import compile_workflow_modules


def test_every_workflow_module_gets_current_bytecode() -> None:
    sources = sorted(Path(workflows.__file__).parent.glob("*.py"))
    for source in sources:  # as a checkout run with PYTHONDONTWRITEBYTECODE=1 has them: none
        Path(importlib.util.cache_from_source(str(source))).unlink(missing_ok=True)
    assert compile_workflow_modules()
    for source in sources:
        compiled = Path(importlib.util.cache_from_source(str(source)))
        assert compiled.exists(), f"no bytecode for {source.name}"
        assert compiled.read_bytes()[:4] == importlib.util.MAGIC_NUMBER
