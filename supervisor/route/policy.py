"""What a request may ask for: an allow-list of the Messages API, never a pass-through.

The route forwards only fields it understands and meters. Anything that would let the provider
reach the network for the agent (server tools, `mcp_servers`, URL sources), spend outside the four
metered counts (1-hour cache writes, betas, priority tiers) or call an unlisted model is refused with
a 400 naming the field. What is forwarded is the re-serialised request that was checked, so the
upstream can never read a different request than the one the route judged (duplicate keys, NaN
and other parser differentials are refused or normalised away).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeGuard

from supervisor.route.config import RequestPolicy

MESSAGE_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "tools",
        "tool_choice",
        "stream",
        "stop_sequences",
        "temperature",
        "top_p",
        "top_k",
        "metadata",
        "thinking",
    }
)
COUNT_TOKENS_FIELDS = frozenset({"model", "messages", "system", "tools", "tool_choice", "thinking"})
_TOOL_KEYS = frozenset({"type", "name", "description", "input_schema", "cache_control"})
_SERVER_TOOL_KEYS = frozenset(
    {"type", "name", "max_uses", "allowed_domains", "blocked_domains", "user_location", "cache_control"}
)
_BLOCK_KEYS = {
    "text": frozenset({"type", "text", "cache_control", "citations"}),
    "image": frozenset({"type", "source", "cache_control"}),
    "tool_use": frozenset({"type", "id", "name", "input", "cache_control"}),
    "tool_result": frozenset({"type", "tool_use_id", "content", "is_error", "cache_control"}),
    "thinking": frozenset({"type", "thinking", "signature"}),
    "redacted_thinking": frozenset({"type", "data"}),
}
_RESULT_BLOCKS = frozenset({"text", "image"})
_CACHE_TTLS = frozenset({"5m"})  # a 1-hour cache write is priced at 2x input: not metered, refused


class PolicyError(ValueError):
    """A request the route will not forward; `field` names what to change."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class Admitted:
    """A request that passed the allow-list: the bytes to forward and what bounds its cost."""

    body: bytes
    model: str
    stream: bool
    max_tokens: int
    input_tokens_bound: int
    server_tool_usd: Decimal


def parse_json(body: bytes, max_nodes: int) -> dict[str, Any]:
    """Strict JSON: one object, no duplicate keys, no NaN/Infinity, a bounded number of nodes."""
    nodes = body.count(b"{") + body.count(b"[")  # braces inside strings count too: an upper bound
    if nodes > max_nodes:
        raise PolicyError("body", f"has up to {nodes} JSON objects/arrays; the route accepts at most {max_nodes}")
    try:
        request = json.loads(body, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except PolicyError:
        raise
    except RecursionError as exc:
        raise PolicyError("body", "is nested too deeply") from exc
    except ValueError as exc:
        raise PolicyError("body", f"is not valid JSON: {exc}") from exc
    if not isinstance(request, dict):
        raise PolicyError("body", "must be a JSON object")
    return request


def admit(
    request: dict[str, Any],
    policy: RequestPolicy,
    allowed_models: frozenset[str],
    betas: str | None,
    *,
    count_tokens: bool = False,
) -> Admitted:
    """Check every field against the allow-list; return what to forward, or raise PolicyError."""
    _check_betas(betas, policy)
    allowed = COUNT_TOKENS_FIELDS if count_tokens else MESSAGE_FIELDS
    for name in request:
        if name not in allowed:
            raise PolicyError(name, "is not a field the LLM route forwards (it forwards only what it can meter)")
    model = _model(request.get("model"), allowed_models)
    max_tokens = 0 if count_tokens else _max_tokens(request.get("max_tokens"), policy.max_tokens_ceiling)
    _check_scalars(request)
    images = _check_system(request.get("system")) + _check_messages(request.get("messages"))
    server_usd = _check_tools(request.get("tools"), policy)
    _check_tool_choice(request.get("tool_choice"))
    _check_thinking(request.get("thinking"), max_tokens)
    body = json.dumps(request, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    bound = len(body) + policy.input_overhead_tokens + images * policy.image_tokens
    return Admitted(body, model, request.get("stream") is True, max_tokens, bound, server_usd)


# -- the fields, one by one --------------------------------------------------------------------


def _check_betas(betas: str | None, policy: RequestPolicy) -> None:
    for beta in (part.strip() for part in (betas or "").split(",")):
        if beta and beta not in policy.betas:
            raise PolicyError(
                "anthropic-beta",
                f"{beta!r} is not enabled on this route (the operator lists betas "
                "under [route.policy] betas in ouroboros.toml)",
            )


def _model(model: Any, allowed: frozenset[str]) -> str:
    if not isinstance(model, str) or not model:
        raise PolicyError("model", "a model name (string) is required")
    if model not in allowed:
        listed = ", ".join(sorted(allowed)) or "none (set agent.model in ouroboros.toml)"
        raise PolicyError("model", f"{model!r} is not allowed on this route; allowed: {listed}")
    return model


def _max_tokens(value: Any, ceiling: int) -> int:
    if not _is_int(value) or value < 1:
        raise PolicyError("max_tokens", "a positive integer is required")
    if value > ceiling:
        raise PolicyError("max_tokens", f"{value} is above this route's ceiling of {ceiling}")
    return int(value)


def _check_scalars(request: dict[str, Any]) -> None:
    if "stream" in request and not isinstance(request["stream"], bool):
        raise PolicyError("stream", "must be true or false")
    for name in ("temperature", "top_p"):
        if name in request and not (_is_number(request[name])):
            raise PolicyError(name, "must be a number")
    if "top_k" in request and not _is_int(request["top_k"]):
        raise PolicyError("top_k", "must be an integer")
    stops = request.get("stop_sequences", [])
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise PolicyError("stop_sequences", "must be a list of strings")
    metadata = request.get("metadata", {})
    if not isinstance(metadata, dict) or set(metadata) - {"user_id"}:
        raise PolicyError("metadata", "only metadata.user_id is forwarded")


def _check_system(system: Any) -> int:
    if system is None or isinstance(system, str):
        return 0
    if not isinstance(system, list):
        raise PolicyError("system", "must be a string or a list of text blocks")
    for index, block in enumerate(system):
        _check_block(block, f"system[{index}]", frozenset({"text"}))
    return 0


def _check_messages(messages: Any) -> int:
    if not isinstance(messages, list):
        raise PolicyError("messages", "a list of messages is required")
    images = 0
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict) or set(message) - {"role", "content"}:
            raise PolicyError(where, "must be an object with only role and content")
        if message.get("role") not in ("user", "assistant"):
            raise PolicyError(f"{where}.role", "must be 'user' or 'assistant'")
        content = message.get("content")
        if isinstance(content, str):
            continue
        if not isinstance(content, list):
            raise PolicyError(f"{where}.content", "must be a string or a list of blocks")
        for number, block in enumerate(content):
            images += _check_block(block, f"{where}.content[{number}]", frozenset(_BLOCK_KEYS))
    return images


def _check_block(block: Any, where: str, kinds: frozenset[str]) -> int:
    """One content block; returns the number of images in it."""
    if not isinstance(block, dict):
        raise PolicyError(where, "must be an object")
    kind = block.get("type")
    if kind not in kinds:
        raise PolicyError(f"{where}.type", f"block type {kind!r} is not forwarded by the LLM route")
    extra = set(block) - _BLOCK_KEYS[kind]
    if extra:
        raise PolicyError(f"{where}.{sorted(extra)[0]}", "is not a field the LLM route forwards")
    _check_cache_control(block.get("cache_control"), where)
    if kind == "image":
        _check_image_source(block.get("source"), where)
        return 1
    if kind == "tool_result" and isinstance(block.get("content"), list):
        return sum(
            _check_block(inner, f"{where}.content[{n}]", _RESULT_BLOCKS) for n, inner in enumerate(block["content"])
        )
    if kind == "tool_result" and not isinstance(block.get("content", ""), str):
        raise PolicyError(f"{where}.content", "must be a string or a list of text/image blocks")
    return 0


def _check_image_source(source: Any, where: str) -> None:
    # A `url` source makes the provider fetch a URL of the agent's choosing: network egress.
    if not isinstance(source, dict) or source.get("type") != "base64" or set(source) - {"type", "media_type", "data"}:
        raise PolicyError(f"{where}.source", "only base64 image sources are forwarded (no URLs, no files)")


def _check_cache_control(value: Any, where: str) -> None:
    if value is None:
        return
    if not isinstance(value, dict) or value.get("type") != "ephemeral" or set(value) - {"type", "ttl"}:
        raise PolicyError(f"{where}.cache_control", 'only {"type": "ephemeral"} is forwarded')
    if "ttl" in value and value["ttl"] not in _CACHE_TTLS:
        raise PolicyError(f"{where}.cache_control.ttl", "only the 5-minute cache is metered; 1-hour writes are refused")


def _check_tools(tools: Any, policy: RequestPolicy) -> Decimal:
    """Custom tools only, unless the operator priced a server tool; returns its worst-case price."""
    if tools is None:
        return Decimal(0)
    if not isinstance(tools, list):
        raise PolicyError("tools", "must be a list")
    server_usd = Decimal(0)
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise PolicyError(where, "must be an object")
        kind = tool.get("type", "custom")
        if kind in policy.server_tools:
            server_usd += _server_tool(
                tool, where, policy.server_tools[kind].max_uses, policy.server_tools[kind].usd_per_use
            )
            continue
        if kind != "custom":
            raise PolicyError(
                f"{where}.type",
                f"{kind!r}: only custom tools are forwarded (server tools reach the "
                "network for the agent; the operator may enable one under [route.policy.server_tools])",
            )
        extra = set(tool) - _TOOL_KEYS
        if extra:
            raise PolicyError(f"{where}.{sorted(extra)[0]}", "is not a field the LLM route forwards")
        if not isinstance(tool.get("name"), str) or not isinstance(tool.get("input_schema"), dict):
            raise PolicyError(where, "a custom tool needs a name and an input_schema object")
        _check_cache_control(tool.get("cache_control"), where)
    return server_usd


def _server_tool(tool: dict[str, Any], where: str, ceiling: int, price: Decimal) -> Decimal:
    extra = set(tool) - _SERVER_TOOL_KEYS
    if extra:
        raise PolicyError(f"{where}.{sorted(extra)[0]}", "is not a field the LLM route forwards")
    uses = tool.get("max_uses")
    if not _is_int(uses) or not 1 <= uses <= ceiling:
        raise PolicyError(f"{where}.max_uses", f"is required, at most {ceiling}, for a priced server tool")
    return price * uses


def _check_tool_choice(choice: Any) -> None:
    if choice is None:
        return
    if (
        not isinstance(choice, dict)
        or choice.get("type") not in ("auto", "any", "tool", "none")
        or set(choice) - {"type", "name", "disable_parallel_tool_use"}
    ):
        raise PolicyError("tool_choice", "must be {type: auto|any|tool|none[, name, disable_parallel_tool_use]}")


def _check_thinking(thinking: Any, max_tokens: int) -> None:
    if thinking is None:
        return
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled"):
        raise PolicyError("thinking", "must be {type: enabled, budget_tokens} or {type: disabled}")
    if set(thinking) - {"type", "budget_tokens"}:
        raise PolicyError("thinking", "only type and budget_tokens are forwarded")
    budget = thinking.get("budget_tokens")
    if thinking["type"] == "enabled" and not (_is_int(budget) and (max_tokens == 0 or budget < max_tokens)):
        raise PolicyError("thinking.budget_tokens", "must be an integer below max_tokens")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
        raise PolicyError(duplicate, "appears twice in one object")
    return result


def _no_constant(name: str) -> Any:
    raise PolicyError("body", f"{name} is not valid JSON")


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
