"""The event loop's one inbox: other threads put typed events in, the loop takes them one at a time.

The outbox watcher, the agent's waiter thread and the signal handlers only put an event here. At most
one `ProposalArrived` is queued at a time however busy the agent (each looks at the whole outbox), so
the queue cannot grow without bound. The clock comes however busy the queue is: a `Tick` every
TICK_S, taken before what is queued once it is due (an agent that keeps its outbox changing must
not starve what only the clock does: `supervisor stop`'s file, probation, following a moved main),
and one that also looks at the outbox every OUTBOX_POLL_S (a safety net under watchfiles: inotify
limits, a dead thread), or on every tick while gating is paused for a full disk.
"""

from __future__ import annotations

import queue
import threading
import time

from supervisor.loop.decisions import AgentExited, Event, ProposalArrived, StopRequested, Tick

OUTBOX_POLL_S = 5.0
TICK_S = 0.5


class Inbox:
    """Thread-safe: `put`, `proposal_arrived` and `agent_exited` from any thread; `take` from the loop's."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Event] = queue.Queue()
        self._proposal_queued = threading.Event()
        self._ticked_at: float | None = None  # the loop's first `take` starts the clock
        self._polled_at = 0.0

    def put(self, event: Event) -> None:
        self._queue.put(event)

    def stop_requested(self) -> None:
        self._queue.put(StopRequested())

    def proposal_arrived(self) -> None:
        """From the outbox watcher's thread."""
        if not self._proposal_queued.is_set():
            self._proposal_queued.set()
            self._queue.put(ProposalArrived())

    def agent_exited(self, run_id: str, code: int | None) -> None:
        """From the agent process's waiter thread: the decision is the loop's."""
        self._queue.put(AgentExited(run_id, code))

    def take(self, *, poll_now: bool = False) -> Event:
        """The next event until the clock's tick is due (TICK_S after the last one), then the tick;
        `poll_now`: a tick looks at the outbox whatever the poll clock says."""
        now = time.monotonic()
        if self._ticked_at is None:
            self._ticked_at = self._polled_at = now
        due_in = self._ticked_at + TICK_S - now
        if due_in > 0:
            try:
                event = self._queue.get(timeout=due_in)
            except queue.Empty:
                pass
            else:
                if isinstance(event, ProposalArrived):
                    self._proposal_queued.clear()  # from here on, a change of the outbox queues a new one
                return event
        self._ticked_at = time.monotonic()
        if poll_now or self._ticked_at - self._polled_at > OUTBOX_POLL_S:
            self._polled_at = self._ticked_at
            return Tick(poll=True)
        return Tick()
