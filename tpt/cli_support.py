"""What every `tpt` sub-command shares: settings, exit codes, and turning failures into actionable errors."""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import traceback
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn, ParamSpec

import typer

from tpt import logging as tpt_logging
from tpt.settings import Settings

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_REFUSED, EXIT_NOT_FOUND, EXIT_UNREACHABLE = 1, 2, 3, 4, 5

P = ParamSpec("P")
_temporal_used = False  # set once a Temporal client exists in this process


def temporal_used() -> None:
    """Say that this process now holds a Temporal client: a command under `ends_process` ends with os._exit."""
    global _temporal_used
    _temporal_used = True


def ends_process(command: Callable[P, None]) -> Callable[P, None]:
    """Once a Temporal client exists, end the process with os._exit after flushing the output: the client's
    Rust threads can abort interpreter teardown with "PyGILState_Release" (temporalio/sdk-python#300), which
    turned about one exit in four into 134 (SIGABRT) on a 2-core machine."""

    @functools.wraps(command)
    def run_then_exit(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            command(*args, **kwargs)
            code = 0
        except typer.Exit as done:
            code = done.exit_code
        except typer.Abort:  # a confirmation answered no
            typer.echo("aborted: nothing changed", err=True)
            code = EXIT_FAILED
        except KeyboardInterrupt:
            code = 130
        except Exception:
            if not _temporal_used:
                raise
            traceback.print_exc()
            code = EXIT_FAILED
        if not _temporal_used:
            raise typer.Exit(code)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    return run_then_exit


def load_settings() -> Settings:
    settings = Settings()
    tpt_logging.configure(settings.log_format, settings.log_level)
    return settings


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    import asyncpg

    from tpt.devstack.processes import StackError
    from tpt.migrations import MigrationError

    try:
        return asyncio.run(coro)
    except (StackError, MigrationError) as err:
        fail(str(err))
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.InvalidCatalogNameError) as err:
        fail(f"cannot reach the audit database ({err}): start the stack with `tpt dev`, "
             "or point TPT_DATABASE_URL at a running Postgres")


def audit_url(settings: Settings) -> str:
    """The audit database: the configured one, or the embedded one `tpt dev` runs."""
    if settings.database_url:
        return settings.database_url
    from tpt.devstack.stack import DATABASE

    return f"postgresql://postgres@127.0.0.1:{settings.embedded_pg_port}/{DATABASE}"
