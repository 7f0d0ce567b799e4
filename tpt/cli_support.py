"""What every `tpt` sub-command shares: settings, exit codes, and turning failures into actionable errors."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, NoReturn

import typer

from tpt import logging as tpt_logging
from tpt.settings import Settings

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_REFUSED, EXIT_NOT_FOUND, EXIT_UNREACHABLE = 1, 2, 3, 4, 5


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
