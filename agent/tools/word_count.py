"""Count lines, words and characters of a workspace file (an example of a self-registered tool)."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from agent.errors import ToolError
from agent.registry import Tool, ToolContext


class WordCountArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="file path relative to the workspace")


def word_count(ctx: ToolContext, args: WordCountArgs) -> str:
    path = ctx.path(args.path)
    if not path.is_file():
        raise ToolError(f"{args.path} is not a file")
    text = path.read_text(encoding="utf-8", errors="replace")
    return f"lines={len(text.splitlines())} words={len(text.split())} chars={len(text)}"


def register_tools(register: Callable[[Tool], None]) -> None:
    register(
        Tool(
            name="word_count",
            description="Count lines, words and characters of a text file.",
            args_model=WordCountArgs,
            handler=word_count,
        )
    )
