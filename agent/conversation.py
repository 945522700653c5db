"""One step of a cycle as a tool-use loop: ask the model, run the tools it calls, feed results back."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.errors import AgentError
from agent.llm import LLMClient, LLMReply
from agent.registry import Phase, ToolContext, ToolRegistry
from agent.usage import Usage

NO_TOOLS = {"type": "none"}  # a request, not a guarantee: other servers may ignore it (see `step`)
NOT_NOW = "error: no tools can be used in this step, so nothing was run. Answer in text only, without tool calls."
_ENDINGS: dict[str, Literal["end_turn", "max_tokens"]] = {
    "end_turn": "end_turn",
    "stop_sequence": "end_turn",
    "max_tokens": "max_tokens",
}


class Action(BaseModel):
    """One tool call, as journaled."""

    model_config = ConfigDict(extra="forbid")

    tool: str
    args: dict[str, Any]
    ok: bool
    output: str = Field(description="first line of the result, for the journal")


class StepOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = ""
    actions: list[Action] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    ended: Literal["end_turn", "turn_cap", "stopped", "max_tokens", "other"] = "end_turn"


def add_user_text(messages: list[dict[str, Any]], text: str) -> None:
    """Append user text, merging into a trailing user turn (e.g. tool results) to keep roles alternating."""
    if messages and messages[-1]["role"] == "user":
        content = messages[-1]["content"]
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        messages[-1]["content"] = [*content, {"type": "text", "text": text}]
    else:
        messages.append({"role": "user", "content": [{"type": "text", "text": text}]})


def _replayable(block: dict[str, Any]) -> dict[str, Any]:
    """A reply block as it can be sent back: a tool call's input must be an object (it fails to run anyway)."""
    if block["type"] == "tool_use" and not isinstance(block.get("input"), dict):
        return {**block, "input": {}}
    return block


def _short(args: dict[str, Any]) -> dict[str, Any]:
    """Arguments for the journal, long strings cut (e.g. whole file contents)."""
    return {k: (v[:120] + "…" if isinstance(v, str) and len(v) > 120 else v) for k, v in args.items()}


class Conversation:
    """Runs steps against one message list, with the tools executed in the step's phase."""

    def __init__(
        self,
        llm: LLMClient,
        registry: ToolRegistry,
        base_context: ToolContext,
        system: str,
        max_turns: int,
        stop: threading.Event,
    ) -> None:
        self.llm = llm
        self.registry = registry
        self.base_context = base_context
        self.system = system
        self.max_turns = max_turns
        self.stop = stop
        self.messages: list[dict[str, Any]] = []

    def work_in(self, workspace: Path, *, guards_source: bool) -> None:
        """Point the tools at another tree for the following steps (a task's project, then our own)."""
        self.base_context = self.base_context.model_copy(
            update={"workspace": workspace, "guards_source": guards_source}
        )

    def step(self, prompt: str, phase: Phase, allow_tools: bool = True) -> StepOutcome:
        """Ask, run the tools the model calls, repeat until it answers in text (or a cap or stop ends it).

        Nothing here relies on the server honouring `tool_choice` (Ollama, llama.cpp and vLLM may not):
        a step without tools answers any tool call with an error result, runs nothing and asks once
        more; a second tool call ends the step with the text given so far. Complete tool calls run
        whatever the `stop_reason` says; calls cut off by `max_tokens` are never run or replayed.
        """
        add_user_text(self.messages, prompt)
        outcome = StepOutcome()
        ctx = self.base_context.model_copy(update={"phase": phase})
        refused = False
        for _ in range(self.max_turns):
            reply = self.llm.complete(
                self.system, self.registry.schemas(), self.messages, None if allow_tools else NO_TOOLS
            )
            outcome.usage = outcome.usage + reply.usage
            if reply.text:
                outcome.text = reply.text
            calls = reply.tool_uses if reply.stop_reason != "max_tokens" else []
            if not calls or (not allow_tools and refused):
                self._end_turn(reply)
                outcome.ended = _ENDINGS.get(reply.stop_reason or "", "other")
                return outcome
            self.messages.append({"role": "assistant", "content": [_replayable(b) for b in reply.content]})
            if allow_tools:
                results = [self._run_tool(ctx, block, outcome) for block in calls]
            else:
                refused = True
                results = [self._refuse_tool(block, outcome) for block in calls]
            self.messages.append({"role": "user", "content": results})
            if self.stop.is_set():
                outcome.ended = "stopped"
                return outcome
        outcome.ended = "turn_cap"
        return outcome

    def _end_turn(self, reply: LLMReply) -> None:
        """Keep the reply's text only: a tool_use that is not answered would break the next request."""
        text_only = [b for b in reply.content if b["type"] == "text"]
        self.messages.append({"role": "assistant", "content": text_only or [{"type": "text", "text": "(empty)"}]})

    @staticmethod
    def _refuse_tool(block: dict[str, Any], outcome: StepOutcome) -> dict[str, Any]:
        args = block.get("input")
        shown = _short(args) if isinstance(args, dict) else {}
        outcome.actions.append(Action(tool=str(block["name"]), args=shown, ok=False, output=NOT_NOW[:200]))
        return {"type": "tool_result", "tool_use_id": block["id"], "content": NOT_NOW, "is_error": True}

    def _run_tool(self, ctx: ToolContext, block: dict[str, Any], outcome: StepOutcome) -> dict[str, Any]:
        name, args = str(block["name"]), block.get("input") or {}
        try:
            if not isinstance(args, dict):
                raise AgentError(f"the input of tool {name} must be a JSON object, not {type(args).__name__}")
            output, ok = self.registry.get(name).call(ctx, args), True
        except AgentError as e:
            output, ok = f"error: {e}", False
        except Exception as e:  # noqa: BLE001 - a broken self-registered tool must not kill the agent
            output, ok = f"error: tool {name} crashed: {type(e).__name__}: {e}", False
        first_line = output.strip().splitlines()[0] if output.strip() else ""
        shown = _short(args) if isinstance(args, dict) else {}
        outcome.actions.append(Action(tool=name, args=shown, ok=ok, output=first_line[:200]))
        return {"type": "tool_result", "tool_use_id": block["id"], "content": output, "is_error": not ok}


def describe_actions(actions: list[Action]) -> str:
    if not actions:
        return "- (no tool calls)"
    return "\n".join(
        f"- `{a.tool}` {json.dumps(a.args, ensure_ascii=False)} → {'ok' if a.ok else 'failed'}: {a.output}"
        for a in actions
    )
