"""Scenario files: the ordered, deterministic script the server answers from (pydantic-validated)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ScenarioError(ValueError):
    """A scenario file is missing or invalid; the message names the file and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextBlock(_Strict):
    """A text block of the scripted reply."""

    type: Literal["text"] = "text"
    text: str


class ToolUseBlock(_Strict):
    """A tool call of the scripted reply; `id` defaults to a deterministic `toolu_<step>_<index>`."""

    type: Literal["tool_use"] = "tool_use"
    name: str
    input: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None


ContentBlock = Annotated[TextBlock | ToolUseBlock, Field(discriminator="type")]


class ScriptedUsage(_Strict):
    """Usage numbers to report; any left out are computed from the request (about 4 characters a token)."""

    input_tokens: int | None = Field(default=None, ge=0)
    output_tokens: int | None = Field(default=None, ge=0)
    cache_read_input_tokens: int | None = Field(default=None, ge=0)
    cache_creation_input_tokens: int | None = Field(default=None, ge=0)


class ScriptedError(_Strict):
    """An HTTP error to answer instead of a message (e.g. 429 rate limit, 529 overloaded)."""

    status: int = Field(ge=400, le=599)
    type: str = "api_error"
    message: str = "scripted error"
    retry_after_ms: int | None = Field(default=10, ge=0, description="sent as the retry-after-ms header")


class Match(_Strict):
    """What the request must contain for this step; a mismatch is answered with a 400 naming the step."""

    contains: str | None = Field(default=None, description="substring of the last user message's text")
    tool_result_contains: str | None = Field(
        default=None, description="substring of a tool_result in the last user message"
    )


class Step(_Strict):
    """One scripted answer: either a message (content, stop_reason, usage) or an error."""

    note: str | None = Field(default=None, description="free text for people reading the scenario")
    match: Match | None = None
    content: list[ContentBlock] = Field(default_factory=list)
    stop_reason: Literal["end_turn", "tool_use", "max_tokens", "stop_sequence"] | None = None
    usage: ScriptedUsage = Field(default_factory=ScriptedUsage)
    error: ScriptedError | None = None
    delay_ms: int = Field(
        default=0, ge=0, le=600_000, description="wait before answering (to test timeouts and signals)"
    )

    @model_validator(mode="after")
    def _message_or_error(self) -> Step:
        if self.error is None and not self.content:
            raise ValueError("a step needs `content` (text/tool_use blocks) or an `error`")
        if self.error is not None and self.content:
            raise ValueError("a step has either `content` or `error`, not both")
        return self

    def resolved_stop_reason(self) -> str:
        if self.stop_reason:
            return self.stop_reason
        return "tool_use" if any(isinstance(b, ToolUseBlock) for b in self.content) else "end_turn"


class Aside(_Strict):
    """An answer outside the order: every request whose system prompt contains `system_contains` gets
    `step`, however often and whenever it comes, and consumes no step of the scenario (so a side
    channel, e.g. the supervisor's task analysis, can run beside an agent's scripted conversation)."""

    system_contains: str = Field(min_length=1)
    step: Step


class Compat(_Strict):
    """Behave like another server that speaks the Messages API (Ollama, llama.cpp, vLLM), not like Anthropic's.

    `ignore_tool_choice`: serve each step as scripted whatever `tool_choice` says (otherwise the server
    honours it: `none` drops the step's tool_use blocks, `any`/`tool` on a step without one is a 400).
    `usage`: `exact` as computed; `approximate` reports only `input_tokens` (all input) and
    `output_tokens`, each off by up to `spread` (seeded, so a run repeats); `missing` reports none.
    """

    ignore_tool_choice: bool = True
    usage: Literal["exact", "approximate", "missing"] = "approximate"
    spread: float = Field(default=0.2, ge=0, le=0.9)
    seed: int = 0


class Scenario(_Strict):
    """An ordered list of steps; each request consumes the next one."""

    version: Literal[1] = 1
    name: str = "scenario"
    description: str = ""
    model: str | None = Field(default=None, description="model id to report; defaults to the requested one")
    on_exhausted: Literal["error", "repeat"] = Field(
        default="error", description="after the last step: answer an error, or start again at the first step"
    )
    steps: list[Step] = Field(min_length=1)
    asides: list[Aside] = Field(default_factory=list, description="answers outside the order (see Aside)")
    compat: Compat | None = Field(default=None, description="behave like a non-Anthropic server (see Compat)")


def load_scenario(path: str | Path) -> Scenario:
    """Read a JSON or TOML scenario file; raise ScenarioError saying what is wrong and where."""
    path = Path(path)
    try:
        raw_text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ScenarioError(
            f"cannot read scenario file {path}: {e.strerror or e}; pass an existing .json or .toml file"
        ) from e
    try:
        data = tomllib.loads(raw_text) if path.suffix == ".toml" else json.loads(raw_text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise ScenarioError(
            f"scenario file {path} is not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: {e}"
        ) from e
    try:
        return Scenario.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
        raise ScenarioError(f"scenario file {path} is invalid: {problems}") from e
