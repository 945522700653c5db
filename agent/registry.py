"""One registration hook for every tool, built-in or self-registered.

A tool module (agent/builtin_tools.py, or any module the agent adds to agent/tools/) defines

    def register_tools(register):
        register(Tool(name=..., description=..., args_model=SomeArgs, handler=some_function))

and the tool becomes both a model-callable tool and an `ouroboros tools <name>` subcommand.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType
from typing import Any

from agent.errors import AgentConfigError, ToolError
from agent.tool import Handler, Phase, Tool, ToolContext

__all__ = ["Handler", "Phase", "Tool", "ToolContext", "ToolRegistry", "default_registry", "self_registered_modules"]


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
