"""The `supervisor` command: the operator's only interface to the trusted side.

Each sub-module holds the commands of one area and exposes them in a `COMMANDS` list; this module
assembles them into one group and is the single place where library errors become exit codes.
"""

from __future__ import annotations

import click
import pydantic

from supervisor.errors import OuroborosError
from supervisor.cli import acceptance_cmds, budget_cmds, console_cmds, engine_cmds, gate_cmds, run_cmds  # noqa: E402


class OuroborosGroup(click.Group):
    """A click group that renders our own errors as one clear line instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except OuroborosError as exc:
            from supervisor.safe_text import terminal_safe  # error text may quote the agent's bytes

            raise click.ClickException(terminal_safe(str(exc))) from exc
        except pydantic.ValidationError as exc:
            raise click.ClickException(render_validation_error(exc)) from exc


def render_validation_error(exc: pydantic.ValidationError) -> str:
    lines = [f"invalid {exc.title}:"]
    for err in exc.errors():
        where = ".".join(str(part) for part in err["loc"]) or "(top level)"
        lines.append(f"  {where}: {err['msg']}")
    return "\n".join(lines)


@click.group(cls=OuroborosGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ouroboros")
def main() -> None:
    """Run a self-improving agent in containers; let its changes reach main only through the gate."""


for _module in (run_cmds, gate_cmds, engine_cmds, budget_cmds, console_cmds, acceptance_cmds):
    for _command in _module.COMMANDS:
        main.add_command(_command)
