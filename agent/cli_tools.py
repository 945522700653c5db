"""`ouroboros tools ...`: one subcommand per registered tool, generated from its argument model."""

from __future__ import annotations

import json
import types
import typing
from typing import Any

import click
from pydantic.fields import FieldInfo

from agent.config import AgentConfig
from agent.errors import AgentError
from agent.registry import Tool, ToolContext, ToolRegistry, default_registry

_CLICK_TYPES: dict[Any, click.ParamType] = {str: click.STRING, int: click.INT, float: click.FLOAT}


def _base_type(annotation: Any) -> Any:
    """`X | None` -> X."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return inner[0] if len(inner) == 1 else str
    return annotation


def _option(name: str, field: FieldInfo) -> click.Option:
    base = _base_type(field.annotation)
    flag = "--" + name.replace("_", "-")
    default = None if field.is_required() else field.get_default(call_default_factory=True)
    if base is bool:
        return click.Option([f"{flag}/--no-{flag[2:]}", name], default=bool(default), help=field.description)
    return click.Option(
        [flag, name],
        type=_CLICK_TYPES.get(base, click.STRING),
        required=field.is_required(),
        default=default,
        show_default=default is not None,
        help=field.description,
    )


def tool_command(tool: Tool) -> click.Command:
    def callback(json_output: bool, **kwargs: Any) -> None:
        config: AgentConfig = click.get_current_context().find_object(AgentConfig) or AgentConfig.from_env()
        ctx = ToolContext(
            workspace=config.workspace,
            outbox=config.outbox,
            phase="execute",
            command_timeout_s=config.command_timeout_s,
            output_cap=config.output_cap,
        )
        args = {k: v for k, v in kwargs.items() if v is not None}
        try:
            output = tool.call(ctx, args)
        except AgentError as e:
            if json_output:
                click.echo(json.dumps({"tool": tool.name, "ok": False, "output": str(e)}))
                raise SystemExit(1) from e
            raise
        click.echo(json.dumps({"tool": tool.name, "ok": True, "output": output}) if json_output else output)

    params: list[click.Parameter] = [_option(n, f) for n, f in tool.args_model.model_fields.items()]
    params.append(click.Option(["--json", "json_output"], is_flag=True, help="Print one JSON document."))
    return click.Command(
        tool.name, callback=callback, params=params, help=f"{tool.description} (tool from {tool.origin})"
    )


@click.command("list")
@click.option("--json", "json_output", is_flag=True, help="Print one JSON document.")
def tools_list(json_output: bool) -> None:
    """List every tool: built-in and self-registered."""
    registry = default_registry()
    if json_output:
        click.echo(json.dumps([{**t.schema_for_model(), "origin": t.origin} for t in registry.tools()], indent=2))
        return
    for tool in registry.tools():
        click.echo(f"{tool.name:<16} {tool.description}  [{tool.origin}]")


class ToolsGroup(click.Group):
    """Subcommands are `list` plus whatever tools the registry holds at invocation time."""

    def _registry(self) -> ToolRegistry:
        return default_registry()

    def list_commands(self, ctx: click.Context) -> list[str]:
        return ["list", *self._registry().names()]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == "list":
            return tools_list
        registry = self._registry()
        return tool_command(registry.get(cmd_name)) if cmd_name in registry.names() else None


tools = ToolsGroup("tools", help="List the tools, or run one: `ouroboros tools <name> --help`.")
