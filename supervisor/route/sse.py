"""Reads the usage out of a Messages API event stream while the bytes pass through untouched.

`message_start` carries the input-side counts, `message_delta` the cumulative output (and, in newer
API versions, updated input/cache counts). Content deltas, the bulk of a stream, are not parsed.
"""

from __future__ import annotations

import json
from typing import Any

from supervisor.route.pricing import Usage

_METERED_EVENTS = {b"message_start", b"message_delta", b"message_stop", b"error"}


class StreamUsage:
    """Feed it the raw stream chunk by chunk; read `usage` when the stream ends."""

    def __init__(self) -> None:
        self._buffer = b""
        self.usage: Usage | None = None
        self.message_id: str | None = None
        self.model: str | None = None
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
        if name and name not in _METERED_EVENTS:
            return
        try:
            data = json.loads(b"\n".join(data_lines))
        except ValueError:
            return
        if isinstance(data, dict):
            self._on_data(data)

    def _on_data(self, data: dict[str, Any]) -> None:
        kind = data.get("type")
        if kind == "message_start" and isinstance(data.get("message"), dict):
            message = data["message"]
            self.message_id = message.get("id") if isinstance(message.get("id"), str) else None
            self.model = message.get("model") if isinstance(message.get("model"), str) else None
            self.usage = Usage.from_api(message.get("usage")) or Usage()
        elif kind == "message_delta":
            raw = data.get("usage")
            if isinstance(raw, dict):
                self.usage = (self.usage or Usage()).merged_with(Usage.from_api(raw), raw)
        elif kind == "message_stop":
            self.stopped = True
        elif kind == "error":
            self.errored = True
