"""The agent's life under the event loop: which generation it runs, its probation, what an exit means.

A start is retried a few times when the engine does not answer. An exit is judged here and the
judgement returned as a decision the event loop applies: an engine that went away or a full disk is
weather (waited out, the agent re-adopted or restarted once); an agent that finished its cycles
idles; anything else is a crash that probation turns into a restart, an automatic rollback of main,
or, after too many rollbacks in a row, giving up.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sandbox.errors import SandboxError
from supervisor.gate.agent_container import AgentRun
from supervisor.gate.gatekeeper import Gatekeeper
from supervisor.loop.agent_process import AgentProcess
from supervisor.loop.context import LoopContext
from supervisor.loop.decisions import Adopt, Continue, Decision, GiveUp, Idle, PauseForDisk, Restart, RollBack
from supervisor.loop.outage_wait import EngineWeather
from supervisor.loop.probation import Action, Probation
from supervisor.route.server import LLMRoute
from supervisor.store.decision_kinds import DecisionKind

LAUNCH_TRIES = 3
# What an engine stopping its containers leaves: 0 (the agent stops cleanly on SIGTERM), 143
# (SIGTERM), 137 (SIGKILL after the stop timeout).
STOP_EXIT_CODES = frozenset({0, 137, 143})
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Launched:
    """A start that happened: what the event loop publishes."""

    run: AgentRun
    generation: int | None
    commit: str
    candidate: str | None
    new_generation: bool


class AgentLifecycle:
    """Starts the agent through its process and judges its exits; `current_commit` is what it runs."""

    def __init__(
        self,
        ctx: LoopContext,
        *,
        gatekeeper: Gatekeeper,
        agent: AgentProcess,
        engine_weather: EngineWeather,
        route: Callable[[], LLMRoute | None],
    ) -> None:
        self.config = ctx.config
        self.engine = ctx.engine
        self.stop = ctx.stop
        self.gatekeeper = gatekeeper
        self.agent = agent
        self.engine_weather = engine_weather
        self.route = route
        self.probation: Probation | None = None
        self.current_commit: str | None = None
        self.generation: int | None = None
        self.crashes = 0
        self.last_start_at = 0.0

    # -- starting -----------------------------------------------------------------------------

    def launch(self, reason: str, after_rollback: bool = False, keep_probation: bool = False) -> Launched | None:
        """Start the agent; an engine that does not answer is waited for, a few times, never fatal at
        once. None if a stop came while waiting."""
        for attempt in range(1, LAUNCH_TRIES + 1):
            try:
                return self._launch(reason, after_rollback=after_rollback, keep_probation=keep_probation)
            except SandboxError as exc:
                log.warning("could not start the agent (try %d of %d): %s", attempt, LAUNCH_TRIES, exc)
                self.agent.stop()
                if attempt == LAUNCH_TRIES or not self.engine_weather.wait():
                    if self.stop.requested:
                        return None
                    raise
        return None  # not reached: the last try returns or raises

    def _launch(self, reason: str, after_rollback: bool, keep_probation: bool) -> Launched:
        main = self.gatekeeper.main()
        generation = self.gatekeeper.generation_of(main)
        new_generation = main != self.current_commit
        now = time.monotonic()
        if self.probation is None:
            self.probation = Probation(self.config.probation, started_at=now)
        elif new_generation and not keep_probation:
            self.probation = self.probation.next_generation(now, after_rollback=after_rollback)
        run = self.agent.start(main, generation, self.route(), reason, running=self.current_commit)
        self.last_start_at = time.monotonic()
        self.current_commit, self.generation = main, generation
        candidate = self.agent.candidate.id if self.agent.candidate else None
        return Launched(run, generation, main, candidate, new_generation)

    def check_probation(self, now: float) -> None:
        """Record once that the running generation survived its probation (call only while it runs)."""
        if self.probation and self.probation.passed(now):
            self.gatekeeper.log.append(
                DecisionKind.PROBATION_PASSED, commit=self.current_commit, generation=self.generation
            )
            log.info("generation %s survived probation: marked good", self.generation)

    # -- what an exit means -------------------------------------------------------------------

    def judge_exit(self, code: int | None) -> Decision:
        # A stopping engine stops its containers too (after it closed its API): that is the engine's
        # weather, not a crash of the generation. Only with the codes such a stop leaves; any other
        # code is the agent's own exit, a crash however the engine fares.
        if code is None or (code in STOP_EXIT_CODES and not self.engine.ping()):
            return self._engine_lost_agent()
        if self.gatekeeper.disk_full():  # weather, not the generation's fault: restarted once there is room
            return PauseForDisk(OSError(errno.ENOSPC, f"the agent exited ({code}) while the disk is full"))
        if code == 0 and self.config.agent.max_cycles is not None:
            log.info("the agent finished its cycles (exit 0); it stays stopped until main changes")
            return Idle()
        now = time.monotonic()
        if self.probation is None:
            self.probation = Probation(self.config.probation, started_at=now)
        action = self.probation.on_crash(now)
        self.gatekeeper.log.append(
            DecisionKind.AGENT_CRASHED,
            commit=self.current_commit,
            generation=self.generation,
            details={"exit_code": code, "action": action.value},
        )  # for the scorecard
        self.crashes += 1
        log.info("agent crashed (exit %s): %s", code, action.value)
        if action is Action.RESTART:
            return Restart(f"crash (exit {code})", keep_probation=True, delay_s=self.probation.restart_delay())
        if action is Action.ROLLBACK:
            return RollBack(self.generation)
        return GiveUp(
            f"generation {self.generation} crash-loops and "
            f"{self.probation.consecutive_rollbacks} automatic rollbacks in a row did not help"
        )

    def _engine_lost_agent(self) -> Decision:
        """The agent's container ended with no exit status: the engine went away. Not a crash of the
        generation: once the engine is back, the agent is re-adopted if it still runs, else restarted
        once."""
        run = self.agent.run
        if run is None or not self.engine_weather.wait():
            return Continue()
        try:
            alive = run.container.is_running()
        except SandboxError:
            alive = False
        if alive and self.agent.run is run:
            return Adopt(run)
        log.info("the agent did not survive the engine's restart: starting it again")
        return Restart("engine restarted", keep_probation=True)
