"""Write docs/cli.md from the `supervisor` commands' own --help (a test keeps it current).

python -m supervisor.cli.reference > docs/cli.md
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypedDict, cast

import click

from supervisor.cli import main

HEADER = """# `supervisor` command reference

Generated from the commands' own `--help` by `python -m supervisor.cli.reference > docs/cli.md`;
`tests/supervisor/test_cli_reference.py` fails when it is stale. The agent's `ouroboros` command is
documented in [agent.md](agent.md).
"""


class _Settings(TypedDict):
    terminal_width: int
    max_content_width: int
    help_option_names: list[str]


# The same settings the real group uses, so the text does not depend on what ran before in-process.
_SETTINGS: _Settings = {"terminal_width": 100, "max_content_width": 100, "help_option_names": ["-h", "--help"]}


def _walk(command: click.Command, ctx: click.Context, path: list[str]) -> Iterator[tuple[list[str], str]]:
    if hasattr(command, "_help_option"):
        # click caches the help option of whichever context rendered the command first (a test may
        # have invoked it outside the group); render from the group's settings every time.
        command._help_option = None
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


if __name__ == "__main__":
    print(render(), end="")
