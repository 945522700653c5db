"""At most one event of each kind per interval, counting the ones held back: what a hostile agent can
repeat forever (refused requests, junk proposals, a sabotaged journal) cannot flood a log.

Thread-safe (the LLM route calls it from its request threads); the clock is injected.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Throttle:
    """Lets one event of each kind through per `interval_s`; the next one let through learns how many
    of its kind were held back meanwhile."""

    def __init__(self, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        return self.allow_counting(key)[0]

    def allow_counting(self, key: str) -> tuple[bool, int]:
        """Whether this one goes through, and how many of its kind were held back since the last."""
        with self._lock:
            now = self._clock()
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                self._held[key] = self._held.get(key, 0) + 1
                return False, 0
            self._last[key] = now
            return True, self._held.pop(key, 0)
