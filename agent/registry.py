"""One registration hook for every tool, built-in or self-registered.

A tool module (agent/builtin_tools.py, or any module the agent adds to agent/tools/) defines

    def register_tools(register):
        register(Tool(name=..., description=..., args_model=SomeArgs, handler=some_function))

and the tool becomes both a model-callable tool and an `ouroboros tools <name>` subcommand.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.errors import AgentConfigError, ToolError
from agent.workspace import check_write_allowed, resolve_inside

Phase = Literal["execute", "reflect"]


class ToolContext(BaseModel):
    """What a tool may know: the workspace, the phase, limits and where proposals go."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    workspace: Path
    phase: Phase = "execute"
    stop: threading.Event | None = Field(default=None, description="set when the agent must stop; long tools give up")
    outbox: Path
    command_timeout_s: float = 120.0
    output_cap: int = 16_000

    def path(self, path: str) -> Path:
        """A path inside the workspace (symlinks followed); raises PathEscapeError otherwise."""
        return resolve_inside(self.workspace, path)

    def writable_path(self, path: str) -> Path:
        """Like `path`, and also refuses the agent's own source outside the reflection phase."""
        resolved = self.path(path)
        check_write_allowed(self.workspace, resolved, self.phase)
        return resolved

    def cap(self, text: str) -> str:
        """Truncate output for the model, saying how much was cut."""
        if len(text) <= self.output_cap:
            return text
        return text[: self.output_cap] + f"\n[... {len(text) - self.output_cap} more characters cut]"


Handler = Callable[[ToolContext, Any], str]


class Tool(BaseModel):
    """A tool: its name, what it does, its argument model (the JSON schema) and the function."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    description: str = Field(min_length=1)
    args_model: type[BaseModel]
    handler: Handler
    origin: str = Field(default="", description="module that registered the tool")

    def input_schema(self) -> dict[str, Any]:
        schema = self.args_model.model_json_schema()
        schema.pop("title", None)
        return schema

    def schema_for_model(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "input_schema": self.input_schema()}

    def call(self, ctx: ToolContext, raw_args: dict[str, Any]) -> str:
        try:
            args = self.args_model.model_validate(raw_args)
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'input'}: {err['msg']}" for err in e.errors())
            raise ToolError(f"bad arguments for {self.name}: {problems}") from e
        return self.handler(ctx, args)


class ToolRegistry:
    """Tools by name, filled through `register` by each tool module's `register_tools` hook."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}

    def register(self, tool: Tool) -> None:
        if tool.name in self._tools:
            other = self._tools[tool.name].origin
            raise AgentConfigError(
                f"tool {tool.name!r} from {tool.origin} is already registered by {other}; rename one"
            )
        self._tools[tool.name] = tool

    def load_module(self, module: ModuleType) -> None:
        hook = getattr(module, "register_tools", None)
        if not callable(hook):
            raise AgentConfigError(f"tool module {module.__name__} has no register_tools(register) function; add one")

        def register(tool: Tool) -> None:
            self.register(tool.model_copy(update={"origin": tool.origin or module.__name__}))

        hook(register)

    def get(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            raise ToolError(f"unknown tool {name!r}; known tools: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        return sorted(self._tools)

    def tools(self) -> list[Tool]:
        return [self._tools[n] for n in self.names()]

    def schemas(self) -> list[dict[str, Any]]:
        """Tool schemas in a stable order, so the prompt prefix stays cacheable."""
        return [t.schema_for_model() for t in self.tools()]


def self_registered_modules(package: str = "agent.tools") -> list[ModuleType]:
    """Import every module in the tools package (sorted by name); these are the agent's own tools."""
    pkg = importlib.import_module(package)
    names = sorted(info.name for info in pkgutil.iter_modules(pkg.__path__) if not info.name.startswith("_"))
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(f"{package}.{name}"))
        except Exception as e:  # noqa: BLE001 - any import failure of agent-written code gets one clear message
            raise AgentConfigError(
                f"tool module {package}.{name} failed to import ({type(e).__name__}: {e}); fix or remove it"
            ) from e
    return modules


def default_registry() -> ToolRegistry:
    """Built-in tools plus every self-registered tool module in agent/tools/."""
    from agent import builtin_tools

    registry = ToolRegistry()
    registry.load_module(builtin_tools)
    for module in self_registered_modules():
        registry.load_module(module)
    return registry
