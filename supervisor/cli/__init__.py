"""The `supervisor` command: the operator's only interface to the trusted side.

Each sub-module holds the commands of one area and exposes them in a `COMMANDS` list; this module
assembles them into one group and is the single place where library errors become exit codes.
"""

from __future__ import annotations

import json
from typing import IO, Any

import click
import pydantic

from sandbox.errors import EngineAccessError, EngineUnavailableError, ImageBuildError
from supervisor.base.errors import (
    EXIT_FAILED,
    EXIT_GAVE_UP,
    EXIT_INFRASTRUCTURE,
    EXIT_USAGE,
    AccessError,
    OuroborosError,
)
from supervisor.base.generation_number import GenerationNumberError
from supervisor.cli.common import JSON_META


class CommandError(click.ClickException):
    """An error on its way out: one line of text, or one JSON document under --json."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED, kind: str = "error", as_json: bool = False):
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares it on the class; ours varies
        self.kind = kind
        self.as_json = as_json

    def show(self, file: IO[Any] | None = None) -> None:
        if self.as_json:
            body = {"error": {"kind": self.kind, "message": self.message, "exit_code": self.exit_code}}
            click.echo(json.dumps(body), file=file)
        else:
            super().show(file)


def exit_code_for(exc: BaseException) -> int:
    from supervisor.loop.decisions import GaveUpError  # imported late: it pulls in the whole supervisor

    if isinstance(exc, GaveUpError):
        return EXIT_GAVE_UP
    if isinstance(exc, GenerationNumberError):
        return EXIT_USAGE  # always text a person passed: the stores read their own names leniently
    if isinstance(exc, (EngineUnavailableError, EngineAccessError, ImageBuildError, PermissionError)):
        return EXIT_INFRASTRUCTURE
    return EXIT_FAILED


class OuroborosGroup(click.Group):
    """A click group that renders our own errors as one clear line (or JSON) instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CommandError:
            raise
        except click.ClickException as exc:
            if not ctx.meta.get(JSON_META):
                raise
            kind = "usage" if isinstance(exc, click.UsageError) else "error"
            raise CommandError(exc.format_message(), exc.exit_code, kind, True) from exc
        except OuroborosError as exc:
            from supervisor.cli.terminal_text import terminal_safe  # error text may quote the agent's bytes

            raise self._error(ctx, terminal_safe(str(exc)), exit_code_for(exc), type(exc).__name__) from exc
        except PermissionError as exc:
            raise self._error(ctx, str(AccessError.from_os_error(exc)), EXIT_INFRASTRUCTURE, "AccessError") from exc
        except pydantic.ValidationError as exc:
            raise self._error(ctx, render_validation_error(exc), EXIT_FAILED, "ValidationError") from exc

    @staticmethod
    def _error(ctx: click.Context, message: str, code: int, kind: str) -> CommandError:
        return CommandError(message, code, kind, bool(ctx.meta.get(JSON_META)))


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


from supervisor.cli import (  # noqa: E402
    acceptance_cmds,
    budget_cmds,
    config_cmds,
    console_cmds,
    engine_cmds,
    fleet_cmds,
    gate_cmds,
    project_cmds,
    run_cmds,
    task_cmds,
)

for _module in (
    run_cmds,
    gate_cmds,
    engine_cmds,
    budget_cmds,
    config_cmds,
    console_cmds,
    acceptance_cmds,
    project_cmds,
    task_cmds,
    fleet_cmds,
):
    for _command in _module.COMMANDS:
        main.add_command(_command)

__all__ = ["EXIT_USAGE", "CommandError", "OuroborosGroup", "main", "render_validation_error"]
