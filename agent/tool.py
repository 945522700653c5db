"""A tool: its name, its argument model (the JSON schema), its function, and what it may know.

Kept apart from the registry so that tool modules (agent/builtin_tools.py, agent/tools/*) import
only this, and the registry imports them: no import cycle.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.errors import ToolError
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
    guards_source: bool = Field(
        default=True, description="the workspace is the agent's own tree (False: a project's work area)"
    )

    def path(self, path: str) -> Path:
        """A path inside the workspace (symlinks followed); raises PathEscapeError otherwise."""
        return resolve_inside(self.workspace, path)

    def writable_path(self, path: str) -> Path:
        """Like `path`, and also refuses the agent's own source outside the reflection phase."""
        resolved = self.path(path)
        if self.guards_source:
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
