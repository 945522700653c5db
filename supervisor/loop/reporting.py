"""What a running supervisor tells: its status (status.json, systemd), journal notes, refusals.

The status file is rewritten on each change of state and on the clock; a full disk leaves the old
one, never worth a crash. Anything the agent can repeat forever (refused proposal files, requests
past a budget cap) is logged at most once a minute per kind, so it cannot flood the decision log or
the journal; a journal the agent sabotaged is logged, never allowed to stop the supervisor.
The supervisor's state itself is changed only by the event loop (`Supervisor.transition`).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from supervisor.base import sd_notify
from supervisor.base.throttle import Throttle
from supervisor.gate.gatekeeper import Gatekeeper
from supervisor.route.server import LLMRoute
from supervisor.store.decision_kinds import DecisionKind
from supervisor.store.journal_writer import journal_note
from supervisor.store.status_file import Status, StatusFile
from supervisor.store.verdicts import Verdict, VerdictSummary

EVENT_THROTTLE_S = 60.0
log = logging.getLogger(__name__)


@dataclass
class Tally:
    """What a run counts (tests, benches and the demo read it); bounded: a supervisor runs for weeks
    and keeps no per-verdict state in memory."""

    verdicts: deque[Verdict] = field(default_factory=lambda: deque(maxlen=5))
    verdict_count: int = 0
    restart_latencies: deque[float] = field(default_factory=lambda: deque(maxlen=100))
    rollbacks: int = 0

    def summaries(self) -> list[VerdictSummary]:
        """The last verdicts as `supervisor status` shows them."""
        fields = set(VerdictSummary.model_fields)
        return [VerdictSummary.model_validate(v.model_dump(include=fields)) for v in self.verdicts]


class StatusBoard:
    """The supervisor's status, published to status.json and to systemd on every write; its state is
    changed only through the event loop's one transition function."""

    def __init__(self, *, path: Path, route: Callable[[], LLMRoute | None]) -> None:
        self.status = Status()
        self._file = StatusFile(path)
        self._route = route

    def write(self) -> None:
        route = self._route()
        if route is not None:
            self.status.route_refusals = route.refusal_counts()
        self._file.write(self.status)  # a full disk leaves the old status; never worth a crash
        sd_notify.publish(self.status)


class Reporter:
    """Journal notes for the agent and refusals for the operator, through the gatekeeper's records."""

    def __init__(self, *, gatekeeper: Gatekeeper) -> None:
        self.gatekeeper = gatekeeper
        self._throttle = Throttle(EVENT_THROTTLE_S)

    def note(self, kind: str, body: str) -> None:
        """Journal for the agent; a sabotaged journal is logged, never allowed to stop the supervisor."""
        journal_note(self.gatekeeper.journal, self.gatekeeper.log, kind, body)

    def refused(self, kind: DecisionKind, message: str) -> None:
        """Log a refusal, at most once a minute per kind: a hostile agent can repeat it forever."""
        if not self._throttle.allow(kind):
            return
        log.info("%s", message)
        try:
            self.gatekeeper.log.append(kind, details={"message": message[:500]})
        except OSError as exc:  # a full disk: the refusal itself still holds
            log.warning("could not log %s: %s", kind, exc)
            return
        self.note(kind, message)
