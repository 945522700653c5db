"""Small thread-safe limiters the route puts in front of the upstream."""

from __future__ import annotations

import threading
import time


class TokenBucket:
    """`rate` requests per second on average, `burst` at once; never blocks, only answers."""

    def __init__(self, rate: float, burst: int, clock=time.monotonic) -> None:
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
        self._semaphore = threading.BoundedSemaphore(limit)

    def try_enter(self) -> bool:
        return self._semaphore.acquire(blocking=False)

    def leave(self) -> None:
        self._semaphore.release()


class Throttle:
    """Lets one event of each kind through per `interval_s`, so a hostile client cannot flood the journal."""

    def __init__(self, interval_s: float = 60.0, clock=time.monotonic) -> None:
        self._interval = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        with self._lock:
            now = self._clock()
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                return False
            self._last[key] = now
            return True
