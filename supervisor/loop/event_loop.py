"""`supervisor start`: run the agent in its container, gate its proposals, restart, watch probation.

One thread decides; everything else (the container's exit, a new proposal file, a signal, the
clock) only puts a typed event in its inbox (supervisor/loop/inbox.py). So every decision happens
in order, and a kill -9 at any point leaves only states that `Gatekeeper.recover()` and `reconcile`
already know how to finish (see `supervisor/store/states.py` for the finite list, and
docs/operations.md "Recovery"). The proposal flow and the agent's lifecycle return typed decisions;
`Supervisor.apply` is the one place they are carried out (the agent started, restarted, re-adopted,
rolled back, idled or given up on), and `Supervisor.transition` the one place the supervisor's state
changes. Its parts are built in supervisor/loop/wiring.py and share one `LoopContext`.

Crash-only rules kept here: the repository lock comes before anything is read or written; a
proposal file leaves the outbox only after its verdict (or its drop) is on disk; the agent is
stopped before its workspace is judged or removed; an engine that stops answering and a disk
that fills up are waited out, never turned into a verdict; shutdown always stops the agent.
"""

from __future__ import annotations

import errno
import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

from sandbox.engine import Engine
from supervisor.base import process_control as control  # control/notify: operator hooks
from supervisor.base.appendfile import is_disk_full
from supervisor.base.errors import OuroborosError
from supervisor.base.repo_lock import AlreadyRunningError as AlreadyRunningError  # re-exported for callers
from supervisor.base.repo_lock import HomeLock, RepoLock
from supervisor.gate.agent_container import AgentRun
from supervisor.gate.gatekeeper import Gatekeeper
from supervisor.gate.outages import GateInterruptedError
from supervisor.gate.rollback import RollbackError
from supervisor.loop import notify, outbox, wiring
from supervisor.loop.agent_lifecycle import AgentLifecycle
from supervisor.loop.context import LoopContext, StopFlag
from supervisor.loop.decisions import (
    Adopt,
    AgentExited,
    Continue,
    Decision,
    Event,
    GaveUpError,
    GiveUp,
    Idle,
    PauseForDisk,
    ProposalArrived,
    Restart,
    RollBack,
    Start,
    StopRequested,
    Tick,
)
from supervisor.loop.diskcap import DiskWatch
from supervisor.loop.inbox import Inbox
from supervisor.loop.outage_wait import DiskWeather
from supervisor.loop.reporting import Tally
from supervisor.loop.shutdown import Step, shut_down
from supervisor.loop.startup import SignalHandlers, clear_leftovers, ready_agent_areas, take_locks
from supervisor.loop.wiring import Parts
from supervisor.route.metering import RouteEvent
from supervisor.route.server import LLMRoute
from supervisor.store.decision_kinds import DecisionKind, route_kind
from supervisor.store.instance import Instance, InstanceConfig
from supervisor.store.states import SupervisorState
from supervisor.store.status_file import Status
from supervisor.store.verdicts import Verdict

MAIN_CHECK_S = 2.0
_S = SupervisorState
log = logging.getLogger(__name__)


class Supervisor:
    """Owns one instance while it runs; `run()` returns the process exit code. Where its log lines
    go (logger `supervisor`) is the caller's choice (`supervisor start` prints them)."""

    def __init__(
        self,
        instance: Instance,
        engine: Engine,
        image: str,
        config: InstanceConfig | None = None,
        stop_when: Callable[[Supervisor], bool] | None = None,
    ) -> None:
        self.ctx = LoopContext(instance, config or instance.config(), engine, StopFlag())
        self.image = image
        self.stop_when = stop_when
        self.events = Inbox()
        self.tally = Tally()  # bounded: a supervisor that runs for weeks keeps no per-verdict state in memory
        self._services = wiring.services(
            self.ctx, transition=self.transition, running=lambda: self.agent, on_route_event=self._on_route_event
        )
        self._parts: Parts | None = None  # once the repository lock is held and the engine answers (_prepare)
        self._disk_watch: DiskWatch | None = None
        self._repo_lock: RepoLock | None = None
        self._home_lock: HomeLock | None = None
        self._watcher: outbox.OutboxWatcher | None = None
        self._main_checked_at = 0.0
        self._signals = SignalHandlers()

    @property
    def instance(self) -> Instance:
        return self.ctx.instance

    @property
    def config(self) -> InstanceConfig:
        return self.ctx.config

    @property
    def parts(self) -> Parts:
        if self._parts is None:
            raise OuroborosError("the supervisor has not taken its repository yet (call run())")
        return self._parts

    @property
    def gatekeeper(self) -> Gatekeeper:
        return self.parts.gatekeeper

    @property
    def lifecycle(self) -> AgentLifecycle:
        return self.parts.lifecycle

    @property
    def agent(self) -> AgentRun | None:
        """The agent's run in progress, if one is."""
        return self._parts.agent.run if self._parts is not None else None

    @property
    def route(self) -> LLMRoute | None:
        return self._services.models.route

    @property
    def status(self) -> Status:
        return self._services.board.status

    @property
    def disk_weather(self) -> DiskWeather:
        return self._services.disk_weather

    # What tests, benches and the demo read of a run:
    @property
    def verdicts(self) -> deque[Verdict]:
        return self.tally.verdicts

    @property
    def verdict_count(self) -> int:
        return self.tally.verdict_count

    @property
    def restart_latencies(self) -> deque[float]:
        return self.tally.restart_latencies

    @property
    def rollbacks(self) -> int:
        return self.tally.rollbacks

    # -- lifecycle ------------------------------------------------------------------------------

    def run(self) -> int:
        # Before anything is read or written: a second supervisor stops here.
        self._repo_lock, self._home_lock = take_locks(self.instance)
        # Before anything slow: a SIGTERM during start-up is queued and handled by the loop.
        self._signals.install(self.request_stop)
        try:
            self._prepare()
            if not self.ctx.stop.requested:
                self._gate_outbox()  # left by a run that was killed: gate before the agent restarts
            if self.status.state is not _S.DISK_FULL:
                self.apply(Start("start"))
            return self._loop()
        except GateInterruptedError as exc:
            log.info("stopped while waiting for the engine: %s", exc)
            return 0
        finally:
            self._shutdown()

    def request_stop(self) -> None:
        self.ctx.stop.request()
        self.events.stop_requested()

    def _prepare(self) -> None:
        """The repository's parts, then what an earlier run left, then the agent's areas, the
        notifications, the route and the outbox watcher."""
        services = self._services
        gatekeeper = wiring.open_gatekeeper(self.ctx, image=self.image, engine_wait=services.engine_weather.wait)
        if not services.engine_weather.wait():
            return
        clear_leftovers(self.ctx)
        self._parts = wiring.parts(
            self.ctx,
            gatekeeper,
            image=self.image,
            services=services,
            on_agent_exit=self.events.agent_exited,
            tally=self.tally,
            stopping=self._stopping,
        )
        self._recover()
        self._disk_watch = ready_agent_areas(self.ctx, worktrees=gatekeeper.worktrees)
        notify.start(self.ctx)
        services.models.start()
        if self.parts.fleet is not None:
            self.parts.fleet.start()  # registered before it claims (an outage: it claims once it answers)
        self.parts.task_steps.recover()  # after the route: a task's tokens are counted from its ledger
        if self.parts.analyst is not None:
            self.parts.analyst.start()  # after the route: it asks the model through it
        self._watcher = outbox.OutboxWatcher(self.instance.outbox, self.events.proposal_arrived).start()

    def _stopping(self) -> bool:
        """A stop was asked for, or `stop_when` says the run is done."""
        return self.ctx.stop.requested or bool(self.stop_when and self.stop_when(self))

    def _shutdown(self) -> None:
        """The agent is always stopped, the pid file always removed, the locks always released."""
        services = self._services
        steps: list[Step] = [
            ("publish stopping", lambda: self.transition(_S.STOPPING)),
            ("stop the agent", self._stop_agent),
            ("stop the outbox watcher", lambda: self._watcher.stop() if self._watcher else None),
            ("stop the task analyst", self._stop_analyst),
            ("stop the LLM route", services.models.stop_route),
            ("stop the scripted model", services.models.stop_model),
            ("publish stopped", self._publish_stopped),
            ("close the agent log", services.agent_log.close),
            ("restore signal handlers", self._signals.restore),
        ]
        shut_down(steps, pid_file=self.instance.pid_file, locks=(self._home_lock, self._repo_lock))

    def _stop_analyst(self) -> None:
        if self._parts is not None and self._parts.analyst is not None:
            self._parts.analyst.stop()

    def _publish_stopped(self) -> None:
        self.status.agent_container = None
        self.transition(_S.STOPPED)

    # -- the supervisor's state: one transition function ----------------------------------------

    def transition(self, state: SupervisorState, message: str | None = None) -> None:
        """The one place the supervisor's state changes (checked against
        `states.SUPERVISOR_TRANSITIONS`, a StateError if not allowed), then published."""
        self.status.change_state(state, message)
        self._services.board.write()

    # -- decisions: the one place they are applied ------------------------------------------------

    def apply(self, decision: Decision) -> None:
        """Carry out what the flow or the lifecycle decided; the only code that starts, restarts,
        re-adopts, rolls back, idles or gives up on the agent."""
        match decision:
            case Continue():
                pass
            case Start(reason):
                if self.agent is None and not self.ctx.stop.requested:
                    self._start(reason)
            case Restart(reason, keep_probation, delay_s, since):
                if delay_s and self.ctx.stop.pause(delay_s):
                    return
                self._restart(reason, keep_probation=keep_probation)
                if since is not None:
                    self.tally.restart_latencies.append(self.lifecycle.last_start_at - since)
            case Adopt(run):
                log.info("the agent survived the engine's restart: re-adopted")
                self.parts.agent.watch(run)
                self.status.agent_container = run.container.id
            case RollBack(generation):
                self._roll_back(generation)
            case Idle():
                self.transition(_S.IDLE)
            case PauseForDisk(error):
                self.disk_weather.pause(error)
            case GiveUp(reason):
                self._give_up(reason)

    def _restart(self, reason: str, after_rollback: bool = False, keep_probation: bool = False) -> None:
        self._stop_agent()
        if self.ctx.stop.requested:
            return  # the loop is about to shut down: starting an agent now would only be killed again
        self._start(reason, after_rollback=after_rollback, keep_probation=keep_probation)

    def _start(self, reason: str, after_rollback: bool = False, keep_probation: bool = False) -> None:
        launched = self.lifecycle.launch(reason, after_rollback=after_rollback, keep_probation=keep_probation)
        if launched is None:
            return
        status = self.status
        if launched.new_generation:
            status.generation_since = datetime.now(UTC)
        status.generation, status.commit = launched.generation, launched.commit
        status.candidate, status.agent_container = launched.candidate, launched.run.container.id
        self.transition(_S.RUNNING)
        log.info(
            "agent running: generation %s (%s), candidate %s [%s]",
            launched.generation,
            launched.commit[:12],
            launched.candidate,
            reason,
        )

    def _stop_agent(self) -> None:
        self.status.agent_container = None
        if self._parts is not None:
            self._parts.agent.stop()

    def _roll_back(self, generation: int | None) -> None:
        try:
            result = self.gatekeeper.rollback()
        except RollbackError as exc:
            self._give_up(f"generation {generation} crash-loops and cannot be rolled back ({exc})")
            return
        probation = self.config.probation
        self.parts.reporter.note(
            "probation-rollback",
            f"Generation {generation} crashed more than {probation.max_restarts} times "
            f"in {probation.window_s:g} s after its restart, so main was rolled back to "
            f"{result.target} (generation {result.generation}).",
        )
        self.tally.rollbacks += 1
        log.info("rolled back to generation %s (%s): crash loop", result.generation, result.target[:12])
        self._restart("probation rollback", after_rollback=True)

    def _give_up(self, message: str) -> None:
        self.gatekeeper.log.append(
            DecisionKind.GAVE_UP, commit=self.lifecycle.current_commit, details={"reason": message}
        )
        self.parts.reporter.note("supervisor-gave-up", message)
        raise GaveUpError(f"{message}; inspect `supervisor log` and `supervisor logs`, fix main, then start again")

    # -- the decision loop ----------------------------------------------------------------------

    def _loop(self) -> int:
        while True:
            event = self.events.take(poll_now=self.status.state is _S.DISK_FULL)
            if isinstance(event, StopRequested) or self.ctx.stop.requested:
                log.info("stopping: SIGTERM or `supervisor stop`")
                return 0
            try:
                self._dispatch(event)
            except OSError as exc:  # a full disk anywhere (a log record, a status, an export) is weather
                if not is_disk_full(exc):
                    raise
                self.disk_weather.pause(exc)
            if self.stop_when is not None and self.stop_when(self):
                return 0

    def _dispatch(self, event: Event) -> None:
        match event:
            case ProposalArrived():
                self._gate_outbox()
            case AgentExited(run_id, code) if self.agent and run_id == self.agent.run_id:
                self.status.agent_container = None
                decision = self.lifecycle.judge_exit(code)
                self.status.restarts = self.lifecycle.crashes
                self.apply(decision)
            case Tick(poll=True):
                self._gate_outbox()
                self._tick()
            case Tick():
                self._tick()

    # -- the outbox ------------------------------------------------------------------------------

    def _recover(self) -> None:
        """Finish what an earlier run left (a full disk makes this wait and retry, never fail the start)."""
        try:
            self.parts.flow.recover()
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            self.disk_weather.pause(exc)

    def _gate_outbox(self) -> None:
        """Gate what is in the outbox; a full disk pauses gating (status says so) instead of deciding."""
        weather = self.disk_weather
        if weather.paused:
            if time.monotonic() < weather.retry_at:
                return
            if self.gatekeeper.disk_full():
                weather.pause(OSError(errno.ENOSPC, "still no space left"))
                return
        try:
            if not self.parts.flow.recovered:
                self.parts.flow.recover()
            self.parts.task_steps.take_results()  # "task done": judged first
            self._gate_next()
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            weather.pause(exc)
            return
        if weather.paused:
            log.info("there is disk space again: gating resumes")
            self.transition(_S.RUNNING, "")
            self.apply(Start("disk space freed"))

    def _gate_next(self) -> None:
        if self.ctx.stop.requested:
            return  # what is queued stays in the outbox for the next start
        found = self.parts.intake.next()
        if found is None:
            return
        self._stop_agent()  # the agent must not touch what is being judged, nor the worktree being removed
        if not found.resume:
            self.parts.agent.resume_in(found.candidate)  # the workspace it wrote the proposal in, or its stand-in
        self.transition(_S.GATING, found.proposal.summary)
        decision = self.parts.flow.judge(found, self.status.generation)
        self.status.verdicts = self.tally.summaries()
        self.apply(decision)
        self.transition(_S.RUNNING, "")
        self.parts.flow.maintain()

    # -- the clock -------------------------------------------------------------------------------

    def _tick(self) -> None:
        if control.stop_requested(self.instance.run_dir):
            self.request_stop()  # `supervisor stop` from another PID namespace (docs/operations.md)
        now = time.monotonic()
        if self.status.state is _S.DISK_FULL:
            self._services.board.write()
            return
        life = self.lifecycle
        if self.agent is not None:  # only a generation that is actually running can prove itself
            life.check_probation(now)
        if self.parts.fleet is not None:
            self.parts.fleet.tick()  # the heartbeat, and whether the operator asked this node to drain
        if not self.ctx.stop.requested:
            self.parts.task_steps.tick()  # the next task, an attempt past its limits, a held-up verdict
        if now - self._main_checked_at < MAIN_CHECK_S:
            self._services.board.write()
            return
        self._main_checked_at = now  # each look at main is a git process: not on every tick, for weeks
        for message in self._disk_watch.newly_full() if self._disk_watch else []:
            # the agent gets ENOSPC; the supervisor says so and runs on
            self.parts.reporter.refused(DecisionKind.DISK_FULL, message)
        main = self.gatekeeper.main()
        if main != life.current_commit and not self.ctx.stop.requested:
            # An operator moved main (approve, rollback): follow it, after gating what the agent
            # already proposed on the old workspace.
            self._gate_outbox()
            if self.gatekeeper.main() == life.current_commit:
                return
            log.info("main moved to %s outside the agent loop; restarting on it", main[:12])
            self.apply(Restart("main moved"))
        self.status.probation = "passed" if life.probation and life.probation.good else "on probation"
        self._services.board.write()

    def _on_route_event(self, event: RouteEvent) -> None:
        # Called from route threads; a refused agent may retry at the route's rate, hence the throttle.
        self.parts.reporter.refused(route_kind(event.kind), f"LLM route: {event.message}")
