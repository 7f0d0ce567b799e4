"""`tpt ops` refuses bad input before it reaches Temporal (exit 2, naming the option); no server needed."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tpt.ops.cli import app

WHO = ["--operator", "ops.duty@tpt", "--reason", "gateway back"]


@pytest.mark.parametrize(("args", "message"), [
    (["retry", *WHO], "name one transfer id, or --query, or --all-stuck"),
    (["skip", "TPT-X", "--all-stuck", *WHO], "name one transfer id, or --query, or --all-stuck"),
    (["reset", "--query", "DonorNation = 'DE'", "--all-stuck", "--to-stage", "US_REVIEW", *WHO], "name one"),
    (["reset", "TPT-X", "--to-stage", "NOWHERE", *WHO], "--to-stage NOWHERE is not a stage"),
    (["retry", "TPT-X", "--operator", "ops.duty@tpt", "--reason", "ok"], "--reason: String should have at least 3"),
    (["stuck", "--sla", "SHIPMENT=soon"], "'soon' is not a duration"),
    (["stuck", "--sla", "COMPLETED=1d"], "COMPLETED is a final stage"),
    (["stuck", "--sla", "US_REVIEW"], "is not STAGE=DURATION"),
])
def test_bad_input_exits_2_naming_what_to_fix(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_an_operator_key_must_be_the_operators_own(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tpt.signing import Signer

    key = Signer.generate("someone.else@tpt").save(tmp_path / "someone.json")
    result = CliRunner().invoke(app, ["retry", "TPT-X", *WHO, "--key", str(key)])
    assert result.exit_code == 2, result.output
    assert "is the key of someone.else@tpt, not of --operator ops.duty@tpt" in result.output
    missing = CliRunner().invoke(app, ["skip", "TPT-X", *WHO, "--key", str(tmp_path / "none.json")])
    assert missing.exit_code == 2 and "--key" in missing.output, missing.output
