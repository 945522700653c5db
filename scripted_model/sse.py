"""Server-sent events for `"stream": true`, in the order the real Messages API sends them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

_TEXT_CHUNK = 40  # split text into several deltas so clients really reassemble a stream


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def _block_events(index: int, block: dict[str, Any]) -> Iterator[bytes]:
    if block["type"] == "text":
        yield _event(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
        )
        text = block["text"]
        for start in range(0, len(text), _TEXT_CHUNK):
            delta = {"type": "text_delta", "text": text[start : start + _TEXT_CHUNK]}
            yield _event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
    else:
        start_block = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        yield _event(
            "content_block_start", {"type": "content_block_start", "index": index, "content_block": start_block}
        )
        delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        yield _event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
    yield _event("content_block_stop", {"type": "content_block_stop", "index": index})


def sse_events(message: dict[str, Any]) -> Iterator[bytes]:
    """message_start, ping, per block start/delta/stop, message_delta (with final usage), message_stop."""
    usage = message.get("usage")  # a compat mode may report none: then no event carries any
    start = {**message, "content": [], "stop_reason": None}
    if usage is not None:
        start["usage"] = {**usage, "output_tokens": 1}
    yield _event("message_start", {"type": "message_start", "message": start})
    yield _event("ping", {"type": "ping"})
    for index, block in enumerate(message["content"]):
        yield from _block_events(index, block)
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    final: dict[str, Any] = {"type": "message_delta", "delta": delta}
    if usage is not None:
        final["usage"] = usage
    yield _event("message_delta", final)
    yield _event("message_stop", {"type": "message_stop"})
