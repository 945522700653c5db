"""A bounded record of what a container printed: the head and the tail, never all of it."""

from __future__ import annotations

import threading


class CappedBuffer:
    """Keeps the first half and last half of `cap` bytes; counts everything."""

    def __init__(self, cap: int) -> None:
        self._half = max(1, cap // 2)
        self._head = bytearray()
        self._tail = bytearray()
        self.total = 0
        self._lock = threading.Lock()

    def write(self, chunk: bytes) -> None:
        with self._lock:
            self.total += len(chunk)
            room = self._half - len(self._head)
            if room > 0:
                self._head += chunk[:room]
                chunk = chunk[room:]
            if chunk:
                self._tail += chunk
                del self._tail[: max(0, len(self._tail) - self._half)]

    @property
    def truncated(self) -> bool:
        return self.total > len(self._head) + len(self._tail)

    def text(self) -> str:
        with self._lock:
            head = self._head.decode("utf-8", "replace")
            tail = self._tail.decode("utf-8", "replace")
            if not self.truncated:
                return head + tail
            omitted = self.total - len(self._head) - len(self._tail)
            return f"{head}\n[... {omitted} bytes omitted ...]\n{tail}"
