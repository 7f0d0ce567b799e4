"""`tpt bench throughput | latency | scale` run end to end at tiny sizes and report their figures.

Output shape only: speed is measured by hand (`tpt bench`), never asserted, except that the baseline issues the same
commands as the transfer. The three run side by side, each on its own scratch dev server and database, to keep the
test short; whatever happens, none outlives the test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tpt.devstack.postgres import EmbeddedPostgres

TPT = str(Path(sys.executable).parent / "tpt")
NUMBER = r"\d+(\.\d+)?"


def test_bench_scenarios_report_their_figures(pg_server: EmbeddedPostgres, tmp_path: Path) -> None:
    env = os.environ | {"TPT_DATABASE_URL": pg_server.url(), "TPT_LOG_FORMAT": "json"}
    runs = {
        "throughput": ["--transfers", "3", "--concurrency", "3"],
        "latency": ["--samples", "4", "--background", "1"],
        "scale": ["--open", "12"],
    }
    procs = {name: subprocess.Popen([TPT, "bench", name, *args, "--json", str(tmp_path / f"{name}.json")], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, args in runs.items()}
    out: dict[str, str] = {}
    try:
        for name, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=180)
            assert proc.returncode == 0, f"{name}: {stderr[-3000:]}"
            out[name] = stdout
    finally:
        for proc in procs.values():  # a failed or stuck scenario: its dev server and database go with it
            if proc.poll() is None:
                proc.kill()
                proc.communicate()

    assert re.search(rf"^TransferWorkflow \(whole lifecycle\) +3 +{NUMBER} +{NUMBER} +{NUMBER}$", out["throughput"],
                     re.MULTILINE)
    assert re.search(rf"^bare workflow, same commands +3 +{NUMBER} +{NUMBER} +{NUMBER}$", out["throughput"],
                     re.MULTILINE)
    assert re.search(r"^ratio ours/bare: \d+\.\d\d$", out["throughput"], re.MULTILINE)
    tp = json.loads((tmp_path / "throughput.json").read_text())
    assert tp["ours"]["transfers"] == tp["bare"]["transfers"] == 3 and tp["ratio"] > 0
    ours, bare = ({k: v for k, v in tp[side]["commands"].items() if k != "workflow_task"} for side in ("ours", "bare"))
    assert ours == bare  # the baseline issues the same commands (workflow tasks may differ by one or two)

    assert re.search(rf"^decision returned → stage visible \(SA and audit row\) +{NUMBER} +{NUMBER} +{NUMBER}",
                     out["latency"], re.MULTILINE)
    assert re.search(r"^ratio p99 visible/bare: \d+\.\d\d$", out["latency"], re.MULTILINE)
    lat = json.loads((tmp_path / "latency.json").read_text())
    assert lat["visible"]["n"] == lat["bare_round_trip"]["n"] == 4 and lat["ratio_p99"] > 0

    assert re.search(r"^worker RSS with 12 waiting +\d+ MiB", out["scale"], re.MULTILINE)
    assert re.search(rf"^restarted → sign_off update served +{NUMBER} s", out["scale"], re.MULTILINE)
    sc = json.loads((tmp_path / "scale.json").read_text())
    assert sc["open"] == 12 and sc["rss_mib"] > sc["rss_idle_mib"] > 0 and sc["restart_to_decision_seconds"] > 0
