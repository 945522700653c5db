"""Restart intensity and probation, as pure logic (the clock is passed in).

Erlang/OTP's supervisor and systemd's StartLimitBurst are the anchors: more than `max_restarts`
crashes within `window_s` seconds means the generation is broken, not unlucky.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from supervisor.base.backoff import Backoff
from supervisor.store.instance import ProbationSettings

BACKOFF_WINDOW_S = 600.0
RESTART_DELAY_MAX_S = 60.0
MAX_DOUBLINGS = 10  # a tiny restart delay still stays tiny: at most 1024 times itself, then the ceiling


class Action(str, Enum):
    RESTART = "restart"
    ROLLBACK = "rollback"
    GIVE_UP = "give-up"


@dataclass
class Probation:
    """Tracks one generation's crashes and the run of automatic rollbacks before it."""

    settings: ProbationSettings
    started_at: float
    consecutive_rollbacks: int = 0
    crashes: deque[float] = field(default_factory=deque)
    recent: deque[float] = field(default_factory=deque)  # crashes in the last BACKOFF_WINDOW_S
    good: bool = False

    def on_crash(self, now: float) -> Action:
        self.crashes.append(now)
        while self.crashes and now - self.crashes[0] > self.settings.window_s:
            self.crashes.popleft()
        self.recent.append(now)
        while self.recent and now - self.recent[0] > BACKOFF_WINDOW_S:
            self.recent.popleft()
        if len(self.crashes) <= self.settings.max_restarts or self.good:
            # A generation that survived probation is not rolled back for later trouble (often the
            # environment, not the code): it is restarted with a growing delay instead.
            return Action.RESTART
        if self.consecutive_rollbacks >= self.settings.max_consecutive_rollbacks:
            return Action.GIVE_UP
        return Action.ROLLBACK

    def restart_delay(self) -> float:
        """The pause before a restart: short on probation, backing off up to a minute once good."""
        if not self.good:
            return self.settings.restart_delay_s
        # Counted over ten minutes, not the intensity window: the delays themselves would otherwise
        # push old crashes out of a short window and the backoff would never grow.
        return Backoff(self.settings.restart_delay_s, RESTART_DELAY_MAX_S).delay(min(len(self.recent), MAX_DOUBLINGS))

    def passed(self, now: float) -> bool:
        """True exactly once: the first time the generation has survived its probation period."""
        if self.good or now - self.started_at < self.settings.probation_s:
            return False
        self.good = True
        self.consecutive_rollbacks = 0
        return True

    def next_generation(self, now: float, after_rollback: bool) -> Probation:
        """Probation for the generation started next; rollbacks count until one proves good."""
        rollbacks = self.consecutive_rollbacks + (1 if after_rollback else 0)
        return Probation(self.settings, started_at=now, consecutive_rollbacks=rollbacks)
