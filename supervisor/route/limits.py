"""Small thread-safe limiters the route puts in front of the upstream."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """`rate` requests per second on average, `burst` at once; never blocks, only answers."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._stamp = clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        """0.0 if a request may go now, else the seconds until one may."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self._rate


class ConcurrencyGate:
    """At most `limit` holders at once; a caller past the limit is told no instead of waiting."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self.busy = 0
        self._changed = threading.Condition()

    def try_enter(self) -> bool:
        with self._changed:
            if self.busy >= self._limit:
                return False
            self.busy += 1
            return True

    def leave(self) -> None:
        with self._changed:
            self.busy -= 1
            self._changed.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no one holds the gate; False if someone still does after timeout_s."""
        with self._changed:
            return self._changed.wait_for(lambda: self.busy == 0, timeout=timeout_s)
