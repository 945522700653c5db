"""Render docs/cli.md, and the command section of docs/gate.md, from the commands' own --help.

`bash scripts/docs.sh` writes both (tests/supervisor/test_cli_reference.py and
tests/gate/test_gate_docs.py fail when either is stale).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypedDict, cast

import click
from click.testing import CliRunner

from supervisor.cli import main
from supervisor.cli.gate_cmds import COMMANDS as GATE_COMMANDS

HEADER = """# `supervisor` command reference

Generated from the commands' own `--help` by `bash scripts/docs.sh`;
`tests/supervisor/test_cli_reference.py` fails when it is stale. The agent's `ouroboros` command is
documented in [agent.md](agent.md).
"""


class _Settings(TypedDict):
    terminal_width: int
    max_content_width: int
    help_option_names: list[str]


# The same settings the real group uses, so the text does not depend on what ran before in-process.
_SETTINGS: _Settings = {"terminal_width": 100, "max_content_width": 100, "help_option_names": ["-h", "--help"]}


def _forget_help_option(command: click.Command) -> None:
    """click (8.1.8 on) caches the help option of whichever context rendered the command first (a
    test may have invoked it outside the group); render from the group's settings every time. An
    older click has no such cache, and never reads the attribute."""
    command._help_option = None


def _walk(command: click.Command, ctx: click.Context, path: list[str]) -> Iterator[tuple[list[str], str]]:
    _forget_help_option(command)
    yield path, command.get_help(ctx)
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            # list_commands names only commands get_command resolves, never None
            sub = cast(click.Command, command.get_command(ctx, name))
            child = click.Context(sub, info_name=name, parent=ctx, **_SETTINGS)
            yield from _walk(sub, child, [*path, name])


def render() -> str:
    root = click.Context(main, info_name="supervisor", **_SETTINGS)
    blocks = [
        f"## `{' '.join(['supervisor', *path])}`\n\n```text\n{text.rstrip()}\n```"
        for path, text in _walk(main, root, [])
    ]
    return HEADER + "\n" + "\n\n".join(blocks) + "\n"


GATE_HEADING = "## Commands\n"


def render_gate_commands() -> str:
    """docs/gate.md from its `## Commands` heading to the end: the gate commands' --help at 80 columns."""
    group = click.Group(
        "supervisor",
        commands={command.name: command for command in GATE_COMMANDS if command.name},
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    parts = [GATE_HEADING]
    for command in GATE_COMMANDS:
        _forget_help_option(command)
        result = CliRunner().invoke(group, [str(command.name), "--help"], prog_name="supervisor", terminal_width=80)
        parts.append(f"\n### supervisor {command.name}\n\n```\n{result.output.rstrip()}\n```\n")
    return "".join(parts)


if __name__ == "__main__":
    print(render(), end="")
