"""Reads the usage out of a Messages API event stream while the bytes pass through untouched.

`message_start` carries the input-side counts, `message_delta` the cumulative output (and, in newer
API versions, updated input/cache counts): the raw `usage` fields are kept as sent, later ones
replacing earlier ones, and judged only when the stream ends (`settle.py`). Content events are
parsed only to count the bytes produced (text, thinking, tool input), the floor under a reported
output count.
"""

from __future__ import annotations

import json
from typing import Any

from supervisor.route.settle import block_bytes

_METERED_EVENTS = {b"message_start", b"message_delta", b"message_stop", b"error"}
_CONTENT_EVENTS = {b"content_block_start", b"content_block_delta"}


class StreamUsage:
    """Feed it the raw stream chunk by chunk; read `raw_usage` and `produced_bytes` when it ends."""

    def __init__(self) -> None:
        self._buffer = b""
        self.raw_usage: dict[str, Any] | None = None  # None: no usage object seen at all
        self.produced_bytes = 0
        self.message_id: str | None = None
        self.model: str | None = None
        self.started = False  # a message_start, content, message_delta or message_stop arrived
        self._final_output = False  # a message_delta gave output_tokens (message_start's is a placeholder)
        self.stopped = False
        self.errored = False

    def feed(self, chunk: bytes) -> None:
        self._buffer = (self._buffer + chunk).replace(b"\r\n", b"\n")
        while b"\n\n" in self._buffer:
            block, self._buffer = self._buffer.split(b"\n\n", 1)
            self._on_event(block)

    def _on_event(self, block: bytes) -> None:
        name = b""
        data_lines = []
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip()
            elif line.startswith(b"data:"):
                data_lines.append(line[5:].strip())
        if name and name not in _METERED_EVENTS and name not in _CONTENT_EVENTS:
            return
        try:
            data = json.loads(b"\n".join(data_lines))
        except ValueError:
            return
        if isinstance(data, dict):
            self._on_data(data)

    def _on_data(self, data: dict[str, Any]) -> None:
        kind = data.get("type")
        if kind in ("content_block_start", "content_block_delta"):
            self.started = True
            inner = data.get("content_block") if kind == "content_block_start" else data.get("delta")
            if isinstance(inner, dict):
                self.produced_bytes += block_bytes(inner)
        elif kind == "message_start" and isinstance(data.get("message"), dict):
            self.started = True
            message = data["message"]
            self.message_id = message.get("id") if isinstance(message.get("id"), str) else None
            self.model = message.get("model") if isinstance(message.get("model"), str) else None
            self._merge(message.get("usage"))
        elif kind == "message_delta":
            self.started = True
            raw = data.get("usage")
            self._final_output = self._final_output or (isinstance(raw, dict) and "output_tokens" in raw)
            self._merge(raw)
        elif kind == "message_stop":
            self.started = self.stopped = True
        elif kind == "error":
            self.errored = True

    def usage_to_settle(self) -> dict[str, Any] | None:
        """The usage as sent; a stream that ended cleanly without a final output count has none."""
        if self.raw_usage is None or not self.stopped or self._final_output:
            return self.raw_usage
        return {k: v for k, v in self.raw_usage.items() if k != "output_tokens"}

    def _merge(self, raw: object) -> None:
        """Later counts are cumulative and replace the fields they name; a non-object is ignored."""
        if isinstance(raw, dict):
            self.raw_usage = {**(self.raw_usage or {}), **raw}
