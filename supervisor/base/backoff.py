"""A pause that grows by a factor after each failed try, up to a ceiling: the one back-off of the supervisor.

Pure and deterministic (no clock, no jitter): callers sleep or wait themselves; this only says how long.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Pauses of `initial_s`, then times `factor` after each try, never above `max_s`.

    A ceiling below `initial_s` caps the first pause too; an `initial_s` of 0 stays 0.
    """

    initial_s: float
    max_s: float
    factor: float = 2.0

    def __post_init__(self) -> None:
        if self.initial_s < 0 or self.max_s < 0:
            raise ValueError(f"a back-off pause cannot be negative ({self.initial_s}, {self.max_s})")
        if self.factor < 1:
            raise ValueError(f"a back-off must not shrink (factor {self.factor})")

    def delay(self, attempt: int) -> float:
        """The pause after `attempt` earlier growths (0: the first pause)."""
        if attempt < 0:
            raise ValueError(f"attempt {attempt} is negative")
        delays = self.delays()
        pause = next(delays)
        for _ in range(attempt):
            grown = next(delays)
            if grown == pause:  # the ceiling (or 0) is reached: it never moves again
                break
            pause = grown
        return pause

    def delays(self) -> Iterator[float]:
        """The pauses in order, without end: the caller stops asking once it succeeded or gave up."""
        pause = min(self.initial_s, self.max_s)
        while True:
            yield pause
            pause = min(pause * self.factor, self.max_s)
