"""Acceptance scenarios as data: what the scripted model asks the agent to do, and what must come of it.

A scenario never describes the exact conversation. It lists the tool calls the scripted model makes
in the execute step and in the self-modify step (by phase, not by position), the fixture files the
workspace starts with, and the outcomes the judge checks: the tool results the agent sent back, the
files it left, its journal, its goals, its outbox and its exit code.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
DEFAULT_REFLECTION = (
    "### Summary\n\nThe task went as planned.\n\n"
    "### Lessons learned\n\n- Check tool results before relying on them.\n\n"
    "### Improvement recommendations\n\n- None that would change my own code."
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _relative(value: str) -> str:
    path = PurePosixPath(value)
    if not value or path.is_absolute() or any(part in ("..", ".", "") for part in value.split("/")):
        raise ValueError(f"{value!r} must be a plain relative path inside the workspace")
    return value


def _regexes(values: list[str]) -> list[str]:
    for value in values:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"bad regular expression {value!r}: {exc}") from exc
    return values


class TextExpectation(_Strict):
    """Conditions on a piece of text the agent produced (a tool result, a file, its output)."""

    contains: list[str] = Field(default_factory=list, description="Substrings that must all appear.")
    absent: list[str] = Field(default_factory=list, description="Substrings that must not appear.")
    regex: list[str] = Field(default_factory=list, description="Regular expressions that must all match (search).")
    equals: str | None = Field(default=None, description="The whole text, exactly (surrounding whitespace ignored).")
    counts: dict[str, int] = Field(
        default_factory=dict,
        description="label → number: the label must appear followed by a number, and every such number must "
        "equal this one (a text listing many candidates cannot pass).",
    )
    max_chars: int | None = Field(default=None, ge=1, description="The text may be at most this long.")

    @field_validator("regex")
    @classmethod
    def _check_regex(cls, value: list[str]) -> list[str]:
        return _regexes(value)

    def problems(self, text: str) -> list[str]:
        found = [f"lacks {item!r}" for item in self.contains if item not in text]
        found += [f"contains {item!r}" for item in self.absent if item in text]
        found += [f"does not match /{item}/" for item in self.regex if not re.search(item, text, re.MULTILINE)]
        if self.equals is not None and text.strip() != self.equals.strip():
            found.append(f"is not exactly {self.equals[:80]!r}")
        if self.max_chars is not None and len(text) > self.max_chars:
            found.append(f"is longer than {self.max_chars} characters")
        for label, value in self.counts.items():
            numbers = [int(m.group(1)) for m in re.finditer(rf"\b{re.escape(label)}\W{{0,3}}(\d+)", text)]
            if not numbers:
                found.append(f"gives no number for {label!r}")
            elif any(number != value for number in numbers):
                found.append(f"gives {label!r} other than {value}")
        return found


class ResultExpectation(TextExpectation):
    """What the agent must send back to the model for one tool call."""

    ok: bool = Field(default=True, description="True: a normal result; False: an error result (is_error).")
    required: bool = Field(default=True, description="False: the run may end before this result is sent back.")


class ToolCall(_Strict):
    """One tool call the scripted model makes; `key` names it in reports (never shown to the agent)."""

    key: str = Field(pattern=r"^[a-z0-9_]{1,32}$")
    tool: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    input: dict[str, Any] = Field(default_factory=dict)
    expect: ResultExpectation = Field(default_factory=ResultExpectation)
    same_turn: bool = Field(default=False, description="Sent in the same model turn as the call before it.")


def turns(calls: list[ToolCall]) -> list[list[ToolCall]]:
    """Calls grouped into model turns (`same_turn` joins a call to the one before)."""
    grouped: list[list[ToolCall]] = []
    for call in calls:
        if call.same_turn and grouped:
            grouped[-1].append(call)
        else:
            grouped.append([call])
    return grouped


class FileExpectation(TextExpectation):
    path: str
    exists: bool = True

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: str) -> str:
        return _relative(value)


class JournalExpectation(TextExpectation):
    """An entry `## <timestamp> <kind>` in `agent/journal/YYYY/MM/DD/<file>.md` whose body meets the text checks."""

    file: Literal["notes", "reflections"]
    kind: str = Field(min_length=1)


class Expectations(_Strict):
    exit_code: int | None = Field(default=0, description="The agent's exit code; None: not checked.")
    files: list[FileExpectation] = Field(default_factory=list)
    journal: list[JournalExpectation] = Field(default_factory=list)
    goal_completed: str | None = Field(default=None, description="This goal moved from active.md to completed.md.")
    proposals: int | None = Field(default=None, description="Exactly this many valid proposals in the outbox.")
    output: TextExpectation | None = Field(default=None, description="What the agent printed.")


class Scenario(_Strict):
    """One held-out acceptance scenario."""

    version: Literal[1] = 1
    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    argv: list[str] = Field(
        default_factory=lambda: ["cycle", "--once"], min_length=1, description="Arguments of `python -m agent`."
    )
    goals: str = Field(default="# Active Goals\n", description="The workspace's agent/goals/active.md.")
    fixtures: dict[str, str] = Field(default_factory=dict, description="Files written into the workspace first.")
    execute: list[ToolCall] = Field(default_factory=list, description="Tool calls of the execute step.")
    execute_result: str = "Done: every step of the plan was carried out."
    reflection: str = DEFAULT_REFLECTION
    self_modify: list[ToolCall] = Field(default_factory=list, description="Tool calls of the self-modify step.")
    self_modify_result: str = "NO CHANGE: nothing worth changing this cycle."
    stop_after_requests: int | None = Field(
        default=None, ge=1, description="Send SIGTERM once the model has answered this many requests."
    )
    deadline_s: float = Field(default=60, gt=0, le=600)
    expect: Expectations = Field(default_factory=Expectations)

    @field_validator("fixtures")
    @classmethod
    def _fixture_paths(cls, value: dict[str, str]) -> dict[str, str]:
        for path in value:
            _relative(path)
        return value

    @model_validator(mode="after")
    def _unique_keys(self) -> Scenario:
        keys = [call.key for call in self.calls()]
        if len(keys) != len(set(keys)):
            raise ValueError("tool call keys must be unique within a scenario")
        return self

    def calls(self) -> list[ToolCall]:
        return [*self.execute, *self.self_modify]


# The stage's results are records (the store keeps them with each candidate); named here too.
from supervisor.store.acceptance_report import (  # noqa: E402
    AcceptanceReport,
    CheckKind,
    Problem,
    ScenarioOutcome,
    ScenarioResult,
)
from supervisor.store.instance import AcceptanceSettings  # noqa: E402

__all__ = ["AcceptanceReport", "AcceptanceSettings", "CheckKind", "Problem", "ScenarioOutcome", "ScenarioResult"]
