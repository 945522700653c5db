"""What the server changes in an answer for `tool_choice` and for a `Compat` mode's usage report."""

from __future__ import annotations

import random
from typing import Any

from scripted_model.scenario import Compat


def tool_choice_problem(body: dict[str, Any], names: list[str], index: int) -> str | None:
    """Why a step calling the tools `names` cannot honour the request's forced tool_choice, or None."""
    choice = body.get("tool_choice")
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind not in ("any", "tool"):
        return None
    wanted = choice.get("name") if kind == "tool" and isinstance(choice, dict) else None
    if names and (wanted is None or wanted in names):
        return None
    return f"scenario step {index} has no tool_use{f' of {wanted!r}' if wanted else ''} but tool_choice forces one"


def honour_tool_choice(
    body: dict[str, Any], content: list[dict[str, Any]], stop_reason: str
) -> tuple[list[dict[str, Any]], str]:
    """`tool_choice: none` as the real API honours it: no tool_use blocks, the turn simply ends."""
    choice = body.get("tool_choice")
    if not (isinstance(choice, dict) and choice.get("type") == "none"):
        return content, stop_reason
    text = [b for b in content if b["type"] != "tool_use"] or [{"type": "text", "text": "(no tools in this turn)"}]
    return text, "end_turn" if stop_reason == "tool_use" else stop_reason


def reported_usage(compat: Compat | None, usage: dict[str, int], index: int) -> dict[str, int] | None:
    """The usage to put in the answer (None: no usage object at all); `usage` is what was really used."""
    if compat is None or compat.usage == "exact":
        return usage
    if compat.usage == "missing":
        return None
    rng = random.Random(f"{compat.seed}:{index}")
    input_all = usage["input_tokens"] + usage["cache_read_input_tokens"] + usage["cache_creation_input_tokens"]
    return {
        "input_tokens": _jitter(input_all, compat.spread, rng),
        "output_tokens": _jitter(usage["output_tokens"], compat.spread, rng),
    }


def _jitter(count: int, spread: float, rng: random.Random) -> int:
    return max(0, round(count * (1 + rng.uniform(-spread, spread))))
