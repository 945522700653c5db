"""A held task's lease, renewed from a thread of its own while the loop's thread works on it without ticking.

The loop renews a running task's lease on its ticks (supervisor/loop/task_flow.py). Committing the
agent's work and judging it run on the loop's thread and take as long as the project's tests: a
lease shorter than that would run out mid-judge, another node would claim the task, and this node's
verdict would be refused as late. While such work runs, `LeaseKeeper` renews the claim every
`every_s` with the queue's own `renew` (one short transaction each; nothing is held while the work
runs) and stops, joined, when the work ends, by a return or an exception.

A renewal that finds the lease lost (the task cancelled, or claimed by another node after a stall)
is logged and renewals stop; the work goes on, and its result is refused as late by the queue's
fenced write. A renewal that fails, whatever the error (the database does not answer, a read-only
standby, an error the pool does not explain), is logged and tried again at the next period: the
thread never dies while the work goes on, or the lease would run out under it.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from supervisor.base.pg.errors import DatabaseError
from supervisor.store.tasks.models import Claim
from supervisor.store.tasks.queue import TaskQueue

MIN_EVERY_S = 0.1  # a renewal is a round trip: never a busy loop, whatever the period asked
log = logging.getLogger(__name__)


class LeaseKeeper:
    """`with LeaseKeeper(queue, claim, lease_s=..., every_s=..., doing="judged"):` the work on the task."""

    def __init__(self, queue: TaskQueue, claim: Claim, *, lease_s: float, every_s: float, doing: str) -> None:
        self.queue = queue
        self.claim = claim
        self.lease_s = lease_s
        self.every_s = max(every_s, MIN_EVERY_S)
        self.doing = doing  # what the work is, for the log: "judged", "committed"
        self.renewals = 0
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"lease-renewal-task-{claim.task_id}-{claim.attempt}", daemon=True
        )

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()  # no renewal after the work's own writes (a renewal after a verdict is late)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                renewed = self.queue.renew(self.claim, self.lease_s)
            except Exception as exc:  # noqa: BLE001 - whatever failed, a dead renewal thread would lose the lease
                log.warning(
                    "task %s: its lease could not be renewed while it was %s (%s); tried again in %g s",
                    self.claim.task_id,
                    self.doing,
                    exc if isinstance(exc, DatabaseError) else f"{type(exc).__name__}: {exc}",
                    self.every_s,
                    exc_info=not isinstance(exc, DatabaseError),  # not an outage: a bug or a database we do not expect
                )
                continue
            if renewed is None:
                self.lost = True
                log.warning(
                    "task %s: its lease was lost while it was %s (cancelled, or claimed by another node); "
                    "its result will be refused as late",
                    self.claim.task_id,
                    self.doing,
                )
                return
            self.renewals += 1
