"""Render every generated doc into a folder (scripts/docs.sh writes them in place or diffs them).

    python scripts/docs.py OUT_DIR

Each generated doc, or the generated part of it, comes from the code of this checkout:

- docs/cli.md: the `supervisor` commands' --help (supervisor/cli/reference.py)
- docs/json.md: the models the commands print under --json (supervisor/cli/json_reference.py)
- docs/gate.md, from `## Commands` to the end: the gate commands' --help (supervisor/cli/reference.py)
- docs/agent.md, between its CLI reference markers: the `ouroboros` commands' --help (agent/cli_reference.py)
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's code, whatever the venv has installed

from agent.cli_reference import BEGIN, END, render_reference  # noqa: E402
from supervisor.cli import json_reference, reference  # noqa: E402


def _whole(render: Callable[[], str]) -> Callable[[str], str]:
    return lambda current: render()


def _from_heading(heading: str, render: Callable[[], str]) -> Callable[[str], str]:
    return lambda current: current[: current.index(heading)] + render()


def _between(begin: str, end: str, render: Callable[[], str]) -> Callable[[str], str]:
    return lambda current: current[: current.index(begin)] + render() + current[current.index(end) + len(end) :]


GENERATED: dict[str, Callable[[str], str]] = {
    "docs/cli.md": _whole(reference.render),
    "docs/json.md": _whole(json_reference.render),
    "docs/gate.md": _from_heading(reference.GATE_HEADING, reference.render_gate_commands),
    "docs/agent.md": _between(BEGIN, END, render_reference),
}


def main(out_dir: Path) -> None:
    for name, render in GENERATED.items():
        target = out_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render((ROOT / name).read_text()))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/docs.py OUT_DIR")
    main(Path(sys.argv[1]))
