"""docs/cli.md is generated from the code and must match it."""

from pathlib import Path

from supervisor.cli.reference import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_cli_reference_is_current():
    assert DOC.read_text() == render(), "regenerate it: bash scripts/docs.sh"
