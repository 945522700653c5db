"""`supervisor start`: run the agent in its container, gate its proposals, restart, watch probation.

One thread decides; everything else (the container's exit, a new proposal file, a signal, the
clock) only puts an event on a queue. So every decision happens in order, and a kill -9 at any
point leaves only states that `Gatekeeper.recover()` and `reconcile` already know how to finish
(see `supervisor/store/states.py` for the finite list, and docs/operations.md "Recovery").

Crash-only rules kept here: the repository lock comes before anything is read or written; a
proposal file leaves the outbox only after its verdict (or its drop) is on disk; the agent is
stopped before its workspace is judged or removed; an engine that stops answering and a disk
that fills up are waited out, never turned into a verdict; shutdown always stops the agent.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sandbox.engine import Engine
from supervisor.base import process_control as control  # control/notify: operator hooks
from supervisor.base.appendfile import is_disk_full
from supervisor.base.errors import OuroborosError
from supervisor.base.repo_lock import AlreadyRunningError as AlreadyRunningError  # re-exported for callers
from supervisor.base.repo_lock import HomeLock, RepoLock
from supervisor.gate.agent_container import AgentRun, give_to_agent
from supervisor.gate.gatekeeper import Gatekeeper
from supervisor.gate.outages import GateInterruptedError
from supervisor.loop import notify, outbox
from supervisor.loop.agent_lifecycle import AgentLifecycle
from supervisor.loop.agent_process import AgentKeeper
from supervisor.loop.diskcap import DiskWatch
from supervisor.loop.intake import Intake
from supervisor.loop.outage_wait import DiskWeather, EngineWeather, StopFlag
from supervisor.loop.proposal_flow import ProposalFlow
from supervisor.loop.reporting import Reporter, StatusBoard, Tally
from supervisor.loop.route_service import ModelService
from supervisor.loop.startup import SignalHandlers, cap_agent_disk, take_locks
from supervisor.route.metering import RouteEvent
from supervisor.route.server import LLMRoute
from supervisor.store.agent_log import RotatingLog
from supervisor.store.instance import Instance, InstanceConfig
from supervisor.store.states import SupervisorState
from supervisor.store.status_file import Status
from supervisor.store.verdicts import Verdict

Progress = Callable[[str], None]
OUTBOX_POLL_S = 5.0
MAIN_CHECK_S = 2.0
_S = SupervisorState
_Part = TypeVar("_Part")


@dataclass
class Event:
    kind: str  # "proposal" | "exit" | "stop" | "tick" | "poll" (a tick that also looks at the outbox)
    run_id: str | None = None
    exit_code: int | None = None


def _ready(part: _Part | None) -> _Part:
    if part is None:
        raise OuroborosError("the supervisor has not taken its repository yet (call run())")
    return part


class Supervisor:
    """Owns one instance while it runs; `run()` returns the process exit code."""

    def __init__(
        self,
        instance: Instance,
        engine: Engine,
        image: str,
        config: InstanceConfig | None = None,
        progress: Progress = lambda message: None,
        stop_when: Callable[[Supervisor], bool] | None = None,
    ) -> None:
        self.instance = instance
        self.engine = engine
        self.image = image
        self.config = config or instance.config()
        self.progress = progress
        self.stop_when = stop_when
        self.events: queue.Queue[Event] = queue.Queue()
        self.tally = Tally()  # bounded: a supervisor that runs for weeks keeps no per-verdict state in memory
        self._stop = StopFlag()
        self._models = ModelService(instance, self.config, self._on_route_event)
        self._board = StatusBoard(instance.status_file, lambda: self.route)
        self.disk_weather = DiskWeather(self._board, progress)
        self._engine_weather = EngineWeather(
            engine, instance.instance_id, self._board, self._stop, progress, lambda: self.agent
        )
        self._log = RotatingLog(
            instance.agent_log,
            max_bytes=self.config.logs.agent_log_max_mb * 2**20,
            keep=self.config.logs.agent_log_keep,
        )
        # Made once the repository lock is held (_prepare):
        self._gatekeeper: Gatekeeper | None = None
        self._keeper: AgentKeeper | None = None
        self._reporter: Reporter | None = None
        self._lifecycle: AgentLifecycle | None = None
        self._flow: ProposalFlow | None = None
        self._disk_watch: DiskWatch | None = None
        self._repo_lock: RepoLock | None = None
        self._home_lock: HomeLock | None = None
        self._watcher: outbox.OutboxWatcher | None = None
        self._outbox = instance.run_dir / "outbox"
        self._main_checked_at = 0.0
        self._signals = SignalHandlers()
        self._proposal_queued = threading.Event()

    @property
    def gatekeeper(self) -> Gatekeeper:
        return _ready(self._gatekeeper)

    @property
    def keeper(self) -> AgentKeeper:
        return _ready(self._keeper)

    @property
    def reporter(self) -> Reporter:
        return _ready(self._reporter)

    @property
    def lifecycle(self) -> AgentLifecycle:
        return _ready(self._lifecycle)

    @property
    def flow(self) -> ProposalFlow:
        return _ready(self._flow)

    @property
    def agent(self) -> AgentRun | None:
        """The agent's run in progress, if one is."""
        return self._keeper.agent if self._keeper is not None else None

    @property
    def route(self) -> LLMRoute | None:
        return self._models.route

    @property
    def status(self) -> Status:
        return self._board.status

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
            if not self._stop.requested:
                self.flow.handle()  # left by a run that was killed: gate before the agent restarts
            if self.agent is None and not self._stop.requested and self.status.state is not _S.DISK_FULL:
                self.lifecycle.launch_safely(reason="start")
            return self._loop()
        except GateInterruptedError as exc:
            self.progress(f"stopped while waiting for the engine: {exc}")
            return 0
        finally:
            self._shutdown()

    def request_stop(self) -> None:
        self._stop.requested = True
        self.events.put(Event("stop"))

    def _prepare(self) -> None:
        gatekeeper = self._wire()
        if not self._engine_weather.wait():
            return
        removed = self.engine.reconcile(instance=self.instance.instance_id)
        if removed:
            self.progress(f"removed {len(removed)} leftover container(s) of an earlier run")
        outbox.prepare(self._outbox)
        self.flow.intake = Intake(gatekeeper, self._outbox, self.progress, self.reporter.refused)
        self.flow.recover()
        # Before the agent's folders are prepared:
        self._disk_watch = cap_agent_disk(self.instance, self.config, gatekeeper.worktrees, self.progress)
        for folder in (self.instance.journal, self.instance.goals):
            folder.mkdir(parents=True, exist_ok=True)
            give_to_agent(folder)
        notify.start(self.instance, self.config, self.progress)
        self._models.start()
        self._watcher = outbox.OutboxWatcher(self._outbox, self._proposal_arrived).start()

    def _wire(self) -> Gatekeeper:
        """The parts that read and write the repository; made once its lock is held."""
        gatekeeper = Gatekeeper(
            self.instance.repo,
            engine=self.engine,
            journal_root=self.instance.journal,
            image=self.image,
            instance=self.instance.instance_id,
            engine_wait=self._engine_weather.wait,
        )
        self._gatekeeper = gatekeeper
        keeper = self._keeper = AgentKeeper(
            self.instance,
            self.config,
            self.engine,
            self.image,
            gatekeeper,
            self._log,
            self._agent_exited,
            self.progress,
        )
        reporter = self._reporter = Reporter(gatekeeper, self.progress)
        lifecycle = self._lifecycle = AgentLifecycle(
            self.config,
            self.engine,
            gatekeeper,
            keeper,
            self._board,
            reporter,
            self.tally,
            self._stop,
            self._engine_weather,
            self.disk_weather,
            lambda: self.route,
            self.progress,
        )
        self._flow = ProposalFlow(
            gatekeeper,
            keeper,
            lifecycle,
            self._board,
            self.tally,
            self.disk_weather,
            self._stop,
            self._stopping,
            self.progress,
        )
        return gatekeeper

    def _stopping(self) -> bool:
        """A stop was asked for, or `stop_when` says the run is done."""
        return self._stop.requested or bool(self.stop_when and self.stop_when(self))

    def _shutdown(self) -> None:
        """Every step is tried even if an earlier one failed (a full disk, a gone engine); the agent is
        always stopped, the pid file always removed, the locks always released."""
        steps: list[tuple[str, Callable[[], None]]] = [
            ("publish stopping", lambda: self._board.set_state(_S.STOPPING)),
            ("stop the agent", self._stop_agent),
            ("stop the outbox watcher", lambda: self._watcher.stop() if self._watcher else None),
            ("stop the LLM route", self._models.stop_route),
            ("stop the scripted model", self._models.stop_model),
            ("publish stopped", self._publish_stopped),
            ("close the agent log", self._log.close),
            ("restore signal handlers", self._signals.restore),
        ]
        try:
            for name, step in steps:
                try:
                    step()
                except Exception as exc:  # noqa: BLE001 - shutdown must reach its end whatever failed
                    self.progress(f"during shutdown, could not {name}: {exc}")
        finally:
            self.instance.pid_file.unlink(missing_ok=True)
            if self._home_lock is not None:
                self._home_lock.release()
            if self._repo_lock is not None:
                self._repo_lock.release()

    def _stop_agent(self) -> None:
        self.status.agent_container = None
        if self._keeper is not None:
            self._keeper.stop()

    def _publish_stopped(self) -> None:
        self.status.agent_container = None
        self._board.set_state(_S.STOPPED)

    # -- the decision loop ----------------------------------------------------------------------

    def _loop(self) -> int:
        polled_at = time.monotonic()
        while True:
            try:
                event = self.events.get(timeout=0.5)
            except queue.Empty:
                event = Event("tick")
            if event.kind == "stop" or self._stop.requested:
                self.progress("stopping: SIGTERM or `supervisor stop`")
                return 0
            if event.kind == "tick" and (
                time.monotonic() - polled_at > OUTBOX_POLL_S or self.status.state is _S.DISK_FULL
            ):
                polled_at = time.monotonic()
                event = Event("poll")  # a safety net under watchfiles (inotify limits, a dead thread)
            try:
                self._dispatch(event)
            except OSError as exc:  # a full disk anywhere (a log record, a status, an export) is weather
                if not is_disk_full(exc):
                    raise
                self.disk_weather.pause(exc)
            if self.stop_when is not None and self.stop_when(self):
                return 0

    def _proposal_arrived(self) -> None:
        """From the watcher thread: at most one proposal event is queued at a time, however busy the
        agent (each event looks at the whole outbox), so the queue cannot grow without bound."""
        if not self._proposal_queued.is_set():
            self._proposal_queued.set()
            self.events.put(Event("proposal"))

    def _agent_exited(self, run_id: str, code: int | None) -> None:
        """From the keeper's waiter thread: the decision is the loop's."""
        self.events.put(Event("exit", run_id=run_id, exit_code=code))

    def _dispatch(self, event: Event) -> None:
        if event.kind == "proposal":
            self._proposal_queued.clear()
            self.flow.handle()
        elif event.kind == "exit" and self.agent and event.run_id == self.agent.run_id:
            self.lifecycle.handle_exit(event.exit_code)
        elif event.kind == "poll":
            self.flow.handle()
            self._tick()
        elif event.kind == "tick":
            self._tick()

    def _tick(self) -> None:
        if control.stop_requested(self.instance.run_dir):
            self.request_stop()  # `supervisor stop` from another PID namespace (docs/operations.md)
        now = time.monotonic()
        if self.status.state is _S.DISK_FULL:
            self._board.write()
            return
        life = self.lifecycle
        # Only a generation that is actually running can prove itself.
        if self.agent is not None and life.probation and life.probation.passed(now):
            generation = self.status.generation
            self.gatekeeper.log.append("probation-passed", commit=life.current_commit, generation=generation)
            self.progress(f"generation {generation} survived probation: marked good")
        if now - self._main_checked_at < MAIN_CHECK_S:
            self._board.write()
            return
        self._main_checked_at = now  # each look at main is a git process: not on every tick, for weeks
        for message in self._disk_watch.newly_full() if self._disk_watch else []:
            self.reporter.refused("disk-full", message)  # the agent gets ENOSPC; the supervisor says so and runs on
        main = self.gatekeeper.main()
        if main != life.current_commit and not self._stop.requested:
            # An operator moved main (approve, rollback): follow it, after gating what the agent
            # already proposed on the old workspace.
            self.flow.handle()
            if self.gatekeeper.main() == life.current_commit:
                return
            self.progress(f"main moved to {main[:12]} outside the agent loop; restarting on it")
            life.relaunch(reason="main moved", after_rollback=False)
        self.status.probation = "passed" if life.probation and life.probation.good else "on probation"
        self._board.write()

    def _on_route_event(self, event: RouteEvent) -> None:
        # Called from route threads; a refused agent may retry at the route's rate, hence the throttle.
        self.reporter.refused(f"route-{event.kind}", f"LLM route: {event.message}")
