"""The test session's signing keys: every party the tests decide as, registered in each test database.

Generated once per session (never written to disk unless a test saves them), so no key outlives the run.
"""

from __future__ import annotations

from pathlib import Path

from tpt.demo import parties_for
from tpt.signing import EEUM_INSPECTOR, OPERATOR, US, Keychain, Party

DONORS = ["DE", "PL", "LT", "NL", "LV", "EE"]
REQUESTERS = [
    ("de.requester", "DE"), ("requester.a3@bmvg.bund.de", "DE"), ("requester@bmvg.bund.de", "DE"),
    ("Hans Meier", "DE"), ("pl.requester", "PL"), ("requester.dzp@mon.gov.pl", "PL"), ("requester@mon.gov.pl", "PL"),
    ("lt.mod.requester", "LT"), ("requester@kam.lt", "LT"), ("requester@mindef.nl", "NL"),
]
OPERATOR_ID = "ops.duty@tpt"

TEST_KEYS = Keychain.generate([
    *parties_for(DONORS, REQUESTERS),
    Party("dsca.eeum", US, EEUM_INSPECTOR),
    Party(OPERATOR_ID, "NATO", OPERATOR),
])


def key_files(directory: Path) -> Path:
    """The session keys as key files (`<actor>.key`), for the `tpt` commands' `--key`."""
    if not (directory / "parties.json").exists():
        TEST_KEYS.save(directory)
    return directory
