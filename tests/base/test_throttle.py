"""supervisor/base/throttle.py: one event per kind per interval, the held-back ones counted."""

from __future__ import annotations

import threading

from supervisor.base.throttle import Throttle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_event_per_kind_per_interval_and_the_held_back_ones_counted() -> None:
    clock = Clock()
    throttle = Throttle(interval_s=60.0, clock=clock)
    assert throttle.allow_counting("a") == (True, 0)
    assert throttle.allow_counting("a") == (False, 0)
    clock.now += 59.9
    assert throttle.allow_counting("a") == (False, 0)
    assert throttle.allow_counting("b") == (True, 0)  # another kind has its own interval
    clock.now += 0.1
    assert throttle.allow_counting("a") == (True, 2)  # the count is handed over once, then starts again
    assert throttle.allow_counting("a") == (False, 0)
    clock.now += 60.0
    assert throttle.allow_counting("a") == (True, 1)
    clock.now += 60.0
    assert throttle.allow_counting("a") == (True, 0)


def test_the_interval_counts_from_the_last_event_let_through() -> None:
    clock = Clock()
    throttle = Throttle(interval_s=10.0, clock=clock)
    allowed = []
    for _ in range(30):
        allowed.append(throttle.allow("k"))
        clock.now += 4.0
    assert allowed.count(True) == 10  # every third try: at 0, 12, 24, ... s


def test_threads_never_let_two_through_in_one_interval() -> None:
    throttle = Throttle(interval_s=3600.0)
    results: list[bool] = []
    lock = threading.Lock()

    def hammer() -> None:
        for _ in range(500):
            allowed = throttle.allow("flood")
            with lock:
                results.append(allowed)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 1 and len(results) == 4000
    assert throttle.allow_counting("flood") == (False, 0)
