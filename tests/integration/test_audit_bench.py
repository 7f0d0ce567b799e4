"""`tpt bench audit` runs end to end on a scratch database and reports both rates and their ratio.

Output shape only: speed is measured by hand, never asserted.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import asyncpg

from tpt.devstack.postgres import EmbeddedPostgres

TPT = str(Path(sys.executable).parent / "tpt")


async def test_bench_audit_reports_the_ratio_and_drops_its_database(
    pg_server: EmbeddedPostgres, tmp_path: Path
) -> None:
    figures = tmp_path / "bench.json"
    env = os.environ | {"TPT_DATABASE_URL": pg_server.url(), "TPT_LOG_FORMAT": "json"}
    done = subprocess.run([TPT, "bench", "audit", "--events", "50", "--json", str(figures)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^AuditStore\.append .* 50 +[\d.]+ +\d+$", done.stdout, re.MULTILINE)
    assert re.search(r"^plain INSERT, same rows .* 50 +[\d.]+ +\d+$", done.stdout, re.MULTILINE)
    assert re.search(r"^ratio chained/plain: \d+\.\d\d$", done.stdout, re.MULTILINE)
    assert "chains verified afterwards: 50 events, 0 broken" in done.stdout
    result = json.loads(figures.read_text())
    assert result["chained"]["events"] == result["plain"]["events"] == 50
    assert result["ratio"] > 0
    conn = await asyncpg.connect(pg_server.url())
    try:
        assert await conn.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", result["database"]) == 0
    finally:
        await conn.close()
