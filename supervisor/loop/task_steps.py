"""The task flow's steps as the event loop runs them, so a fleet database that stops answering only pauses them.

One machine: a step runs, and whatever it raises is the loop's. A fleet node: while the database is
unreachable no step runs (the agent runs on, a `task-result` stays in the outbox), and a step that
finds it gone tells the node (supervisor/loop/fleet_node.py), which tries again at its next beat.
What an outage skipped runs first once the database answers: recovery of what this node held (a
start during an outage), then the agent's results, then the tick, so a task the agent finished
during the outage is judged, never ended for the tokens or time it spent while nobody could judge it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from supervisor.base.pg.errors import DatabaseError
from supervisor.loop.task_flow import TaskFlow

if TYPE_CHECKING:  # psycopg is imported only by a node of a fleet
    from supervisor.loop.fleet_node import FleetNode


class TaskSteps:
    def __init__(self, flow: TaskFlow, fleet: FleetNode | None, outbox: Path) -> None:
        self.flow = flow
        self.fleet = fleet
        self.outbox = outbox
        self._recovered = False
        self._results_waiting = False

    def recover(self) -> None:
        self._recovered = self._run(self.flow.recover)

    def take_results(self) -> None:
        """The agent's `task-result` messages; skipped by an outage, they are taken at the next tick."""
        if self._recovered:
            self._results_waiting = not self._run(lambda: self.flow.take_results(self.outbox))
        else:
            self._results_waiting = True

    def tick(self) -> None:
        if not self._recovered:
            self.recover()
        if self._recovered and self._results_waiting:
            self.take_results()
        if self._recovered and not self._results_waiting:
            self._run(self.flow.tick)

    def _run(self, step: Callable[[], None]) -> bool:
        """True when the step ran; False when the fleet database is, or just went, out of reach."""
        fleet = self.fleet
        if fleet is not None and not fleet.reachable:
            return False
        try:
            step()
        except DatabaseError as exc:
            if fleet is None:
                raise
            fleet.lost_database(exc)
            return False
        return True
