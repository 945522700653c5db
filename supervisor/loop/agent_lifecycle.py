"""The agent's life under the runner: which generation it runs, its probation, what an exit means.

A start is retried a few times when the engine does not answer. An exit is judged here: an engine
that went away or a full disk is weather (waited out, the agent re-adopted or restarted once); an
agent that finished its cycles idles; anything else is a crash that probation turns into a
restart, an automatic rollback of main, or, after too many rollbacks in a row, giving up.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sandbox.engine import Engine
from sandbox.errors import SandboxError
from supervisor.base.errors import OuroborosError
from supervisor.gate.gatekeeper import Gatekeeper
from supervisor.gate.rollback import RollbackError
from supervisor.loop.agent_process import AgentKeeper
from supervisor.loop.outage_wait import DiskWeather, EngineWeather, StopFlag
from supervisor.loop.probation import Action, Probation
from supervisor.loop.reporting import Reporter, StatusBoard, Tally
from supervisor.route.server import LLMRoute
from supervisor.store.instance import InstanceConfig
from supervisor.store.states import SupervisorState

LAUNCH_TRIES = 3
# What an engine stopping its containers leaves: 0 (the agent stops cleanly on SIGTERM), 143
# (SIGTERM), 137 (SIGKILL after the stop timeout).
STOP_EXIT_CODES = frozenset({0, 137, 143})
_S = SupervisorState


class GaveUpError(OuroborosError, RuntimeError):
    """Too many automatic rollbacks in a row: a person has to look."""


class AgentLifecycle:
    """Starts, restarts and stops the agent through the keeper; `current_commit` is what it runs."""

    def __init__(
        self,
        config: InstanceConfig,
        engine: Engine,
        gatekeeper: Gatekeeper,
        keeper: AgentKeeper,
        board: StatusBoard,
        reporter: Reporter,
        tally: Tally,
        stop: StopFlag,
        engine_weather: EngineWeather,
        disk_weather: DiskWeather,
        route: Callable[[], LLMRoute | None],
        progress: Callable[[str], None],
    ) -> None:
        self.config = config
        self.engine = engine
        self.gatekeeper = gatekeeper
        self.keeper = keeper
        self.board = board
        self.reporter = reporter
        self.tally = tally
        self.stop = stop
        self.engine_weather = engine_weather
        self.disk_weather = disk_weather
        self.route = route
        self.progress = progress
        self.probation: Probation | None = None
        self.current_commit: str | None = None
        self.last_start_at = 0.0

    # -- starting and stopping ----------------------------------------------------------------

    def relaunch(self, reason: str, after_rollback: bool, keep_probation: bool = False) -> None:
        self.stop_agent()
        if self.stop.requested:
            return  # the loop is about to shut down: starting an agent now would only be killed again
        self.launch_safely(reason, after_rollback=after_rollback, keep_probation=keep_probation)

    def launch_safely(self, reason: str, after_rollback: bool = False, keep_probation: bool = False) -> None:
        """Start the agent; an engine that does not answer is waited for, a few times, never fatal at once."""
        for attempt in range(1, LAUNCH_TRIES + 1):
            try:
                self._launch(reason, after_rollback=after_rollback, keep_probation=keep_probation)
                return
            except SandboxError as exc:
                self.progress(f"could not start the agent (try {attempt} of {LAUNCH_TRIES}): {exc}")
                self.stop_agent()
                if attempt == LAUNCH_TRIES or not self.engine_weather.wait():
                    if self.stop.requested:
                        return
                    raise

    def _launch(self, reason: str, after_rollback: bool = False, keep_probation: bool = False) -> None:
        main = self.gatekeeper.main()
        generation = self.gatekeeper.generation_of(main)
        new_generation = main != self.current_commit
        now = time.monotonic()
        if self.probation is None:
            self.probation = Probation(self.config.probation, started_at=now)
        elif new_generation and not keep_probation:
            self.probation = self.probation.next_generation(now, after_rollback=after_rollback)
        run = self.keeper.start(main, generation, self.route(), reason, running=self.current_commit)
        self.last_start_at = time.monotonic()
        self.current_commit = main
        status = self.board.status
        if new_generation:
            status.generation_since = datetime.now(UTC)
        status.change_state(_S.RUNNING)
        status.generation = generation
        status.commit = main
        candidate = self.keeper.candidate.id if self.keeper.candidate else None
        status.candidate = candidate
        status.agent_container = run.container.id
        self.board.write()
        self.progress(f"agent running: generation {generation} ({main[:12]}), candidate {candidate} [{reason}]")

    def stop_agent(self) -> None:
        self.board.status.agent_container = None
        self.keeper.stop()

    # -- what an exit means -------------------------------------------------------------------

    def handle_exit(self, code: int | None) -> None:
        status = self.board.status
        status.agent_container = None
        # A stopping engine stops its containers too (after it closed its API): that is the engine's
        # weather, not a crash of the generation. Only with the codes such a stop leaves; any other
        # code is the agent's own exit, a crash however the engine fares.
        if code is None or (code in STOP_EXIT_CODES and not self.engine.ping()):
            self._engine_lost_agent()
            return
        if self.gatekeeper.disk_full():  # weather, not the generation's fault: restarted once there is room
            self.disk_weather.pause(OSError(errno.ENOSPC, f"the agent exited ({code}) while the disk is full"))
            return
        if code == 0 and self.config.agent.max_cycles is not None:
            self.progress("the agent finished its cycles (exit 0); it stays stopped until main changes")
            self.board.set_state(_S.IDLE)
            return
        now = time.monotonic()
        if self.probation is None:
            self.probation = Probation(self.config.probation, started_at=now)
        action = self.probation.on_crash(now)
        self.gatekeeper.log.append(
            "agent-crashed",
            commit=self.current_commit,
            generation=status.generation,
            details={"exit_code": code, "action": action.value},
        )  # for the scorecard
        status.restarts += 1
        self.progress(f"agent crashed (exit {code}): {action.value}")
        if action is Action.RESTART:
            if self.stop.pause(self.probation.restart_delay()):
                return
            self.relaunch(reason=f"crash (exit {code})", after_rollback=False, keep_probation=True)
        elif action is Action.ROLLBACK:
            self._roll_back()
        else:
            self._give_up(
                f"generation {status.generation} crash-loops and "
                f"{self.probation.consecutive_rollbacks} automatic rollbacks in a row did not help"
            )

    def _roll_back(self) -> None:
        try:
            result = self.gatekeeper.rollback()
        except RollbackError as exc:
            self._give_up(f"generation {self.board.status.generation} crash-loops and cannot be rolled back ({exc})")
            return
        self.reporter.note(
            "probation-rollback",
            f"Generation {self.board.status.generation} crashed more than {self.config.probation.max_restarts} times "
            f"in {self.config.probation.window_s:g} s after its restart, so main was rolled back to "
            f"{result.target} (generation {result.generation}).",
        )
        self.tally.rollbacks += 1
        self.progress(f"rolled back to generation {result.generation} ({result.target[:12]}): crash loop")
        self.relaunch(reason="probation rollback", after_rollback=True)

    def _give_up(self, message: str) -> None:
        self.gatekeeper.log.append("gave-up", commit=self.current_commit, details={"reason": message})
        self.reporter.note("supervisor-gave-up", message)
        raise GaveUpError(f"{message}; inspect `supervisor log` and `supervisor logs`, fix main, then start again")

    def _engine_lost_agent(self) -> None:
        """The agent's container ended with no exit status: the engine went away. Not a crash of the
        generation: once the engine is back, the agent is re-adopted if it still runs, else restarted
        once."""
        run = self.keeper.agent
        if run is None or not self.engine_weather.wait():
            return
        try:
            alive = run.container.is_running()
        except SandboxError:
            alive = False
        if alive and self.keeper.agent is run:
            self.progress("the agent survived the engine's restart: re-adopted")
            self.keeper.watch(run)
            self.board.status.agent_container = run.container.id
            return
        self.progress("the agent did not survive the engine's restart: starting it again")
        self.relaunch(reason="engine restarted", after_rollback=False, keep_probation=True)
