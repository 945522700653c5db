"""The CLI reference in docs/gate.md is generated from the commands' --help; this keeps it current.

Regenerate with:  bash scripts/docs.sh
"""

from __future__ import annotations

from pathlib import Path

from supervisor.cli.reference import GATE_HEADING, render_gate_commands

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "gate.md"


def test_cli_reference_is_current() -> None:
    text = DOC.read_text()
    assert text[text.index(GATE_HEADING) :] == render_gate_commands(), "regenerate: bash scripts/docs.sh"
