"""The CLI reference in docs/gate.md is generated from the commands' --help; this keeps it current.

Regenerate with:  .venv/bin/python tests/gate/test_gate_docs.py --write
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from supervisor.cli.gate_cmds import COMMANDS  # noqa: E402

DOC = ROOT / "docs" / "gate.md"
HEADING = "## Commands\n"


def reference() -> str:
    group = click.Group(
        "supervisor",
        commands={command.name: command for command in COMMANDS},
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    parts = [HEADING]
    for command in COMMANDS:
        if hasattr(command, "_help_option"):
            command._help_option = None  # click caches the help option of whichever group ran it first
        result = CliRunner().invoke(group, [command.name, "--help"], prog_name="supervisor", terminal_width=80)
        parts.append(f"\n### supervisor {command.name}\n\n```\n{result.output.rstrip()}\n```\n")
    return "".join(parts)


def test_cli_reference_is_current() -> None:
    text = DOC.read_text()
    assert text[text.index(HEADING) :] == reference(), (
        "regenerate: .venv/bin/python tests/gate/test_gate_docs.py --write"
    )


if __name__ == "__main__" and "--write" in sys.argv:
    current = DOC.read_text()
    DOC.write_text(current[: current.index(HEADING)] + reference())
