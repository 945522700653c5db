"""Waiting out the weather while the supervisor runs: an engine that stops answering, a full disk.

Neither is the generation's fault, so neither becomes a verdict or a crash: the engine is waited
for with a growing back-off (status says so, a stop cuts the wait short), and a full disk pauses
gating until a retry finds room again. Both publish what they wait for through the event loop's one
transition function (`transition`), never by writing the status themselves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sandbox.errors import SandboxError
from supervisor.base.backoff import Backoff
from supervisor.gate.agent_container import AgentRun
from supervisor.loop.context import LoopContext
from supervisor.store.states import SupervisorState

ENGINE_BACKOFF_MAX_S = 30.0
DISK_RETRY_S = 10.0
_S = SupervisorState
log = logging.getLogger(__name__)
State = Callable[[], SupervisorState]  # the supervisor's state now
Transition = Callable[[SupervisorState, str], None]  # the event loop's one way to change it


class EngineWeather:
    """Waits until the container engine answers; then removes what it left of this instance but the
    agent's run in progress (`running`)."""

    def __init__(
        self,
        ctx: LoopContext,
        *,
        state: State,
        transition: Transition,
        running: Callable[[], AgentRun | None],
    ) -> None:
        self.engine = ctx.engine
        self.instance_id = ctx.instance.instance_id
        self.stop = ctx.stop
        self.state = state
        self.transition = transition
        self.running = running

    def wait(self, pause_s: float = 0.0) -> bool:
        """Pause `pause_s` (after the engine failed a gate), then back off until the engine answers;
        status shows the wait, a stop cuts it short. False if a stop came first."""
        if not pause_s and self.engine.ping():
            return True
        before = self.state()
        if pause_s:
            why = f"the container engine failed a gate; asking it again in {pause_s:g} s"
        else:
            why = f"the container engine does not answer; waiting for it (backing off up to {ENGINE_BACKOFF_MAX_S:g} s)"
        self.transition(_S.WAITING_FOR_ENGINE, why)
        log.info("%s", why)
        if pause_s and self.stop.pause(pause_s):
            return False
        delays = Backoff(0.5, ENGINE_BACKOFF_MAX_S).delays()
        while not self.engine.ping():
            if self.stop.pause(next(delays)):
                return False
        log.info("the container engine answers")
        self.transition(before if before is not _S.WAITING_FOR_ENGINE else _S.RUNNING, "")
        agent = self.running()
        keep = {agent.run_id} if agent is not None else set()
        try:
            self.engine.reconcile(instance=self.instance_id, keep_run_ids=keep)
        except SandboxError as exc:  # an engine that flaps again: what is left carries our labels, next time
            log.warning("could not remove leftover containers yet (%s)", exc)
        return True


class DiskWeather:
    """A full disk pauses gating (status says so) until `retry_at`, when the next try looks again."""

    def __init__(self, *, state: State, transition: Transition) -> None:
        self.state = state
        self.transition = transition
        self.retry_at = 0.0

    @property
    def paused(self) -> bool:
        return self.state() is _S.DISK_FULL

    def pause(self, exc: BaseException) -> None:
        self.retry_at = time.monotonic() + DISK_RETRY_S
        if not self.paused:
            log.info("disk full: gating paused until there is room (%s)", exc)
        self.transition(_S.DISK_FULL, f"disk full, gating paused: {str(exc)[:300]}")
