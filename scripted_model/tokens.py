"""A deterministic token estimate (about 4 characters a token), shared by the server and its callers."""

from __future__ import annotations

import json
from typing import Any


def estimate_tokens(value: Any) -> int:
    """Estimate tokens for a string or any JSON-able value; never below 1 for non-empty input."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), sort_keys=True)
    return (len(text) + 3) // 4 if text else 0


def _has_cache_control(blocks: Any) -> bool:
    return isinstance(blocks, list) and any(isinstance(b, dict) and "cache_control" in b for b in blocks)


def request_token_split(body: dict[str, Any]) -> tuple[int, int]:
    """Return (cacheable prefix tokens, other input tokens) for a Messages request.

    The prefix (tools, then system) counts as cacheable only when it carries a `cache_control`
    marker, as with the real API.
    """
    tools = body.get("tools") or []
    system = body.get("system") or ""
    prefix = estimate_tokens(tools) + estimate_tokens(system) if tools or system else 0
    rest = estimate_tokens(body.get("messages") or [])
    if _has_cache_control(tools) or _has_cache_control(system):
        return prefix, rest
    return 0, prefix + rest
