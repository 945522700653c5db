"""The event loop's one inbox: other threads put typed events in, the loop takes them one at a time.

The outbox watcher, the agent's waiter thread and the signal handlers only put an event here. At most
one `ProposalArrived` is queued at a time however busy the agent (each looks at the whole outbox), so
the queue cannot grow without bound. When nothing comes, the clock does: a `Tick` every half second,
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
        self._polled_at: float | None = None  # the loop's first `take` starts the poll clock

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
        """The next event, or the clock's tick after TICK_S; `poll_now`: a tick looks at the outbox
        whatever the poll clock says."""
        if self._polled_at is None:
            self._polled_at = time.monotonic()
        try:
            event = self._queue.get(timeout=TICK_S)
        except queue.Empty:
            event = Tick()
        if isinstance(event, ProposalArrived):
            self._proposal_queued.clear()  # from here on, a change of the outbox queues a new one
        if (
            isinstance(event, Tick)
            and not event.poll
            and (poll_now or time.monotonic() - self._polled_at > OUTBOX_POLL_S)
        ):
            self._polled_at = time.monotonic()
            return Tick(poll=True)
        return event
