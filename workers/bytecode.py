"""Bytecode for the workflow modules, written once when a worker is built.

The workflow sandbox imports each workflow module afresh for every workflow instance it creates. Without a
`__pycache__` (PYTHONDONTWRITEBYTECODE=1, which this machine and many images set, and a source checkout that
has never been compiled) each of those imports compiles the source again: measured at about half the worker's
CPU while transfers open (`tpt bench scale`). With the bytecode written, the imports only execute it.
"""

from __future__ import annotations

import compileall
from pathlib import Path

import structlog

import workflows

log = structlog.get_logger(__name__)


def compile_workflow_modules() -> bool:
    """Write missing or stale `.pyc` files for `workflows/`; False (and the worker only slower) if it cannot."""
    where = Path(workflows.__file__).parent
    try:
        return bool(compileall.compile_dir(where, quiet=2, workers=1))
    except OSError as err:  # a read-only tree: imports compile from source as before
        log.warning("workflow bytecode not written; every new workflow instance compiles its module",
                    directory=str(where), error=str(err))
        return False
