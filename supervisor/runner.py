"""`supervisor start`: run the agent in its container, gate its proposals, restart, watch probation.

One thread decides; everything else (the container's exit, a new proposal file, a signal, the
clock) only puts an event on a queue. So every decision happens in order, and a kill -9 at any
point leaves only states that `Gatekeeper.recover()` and `reconcile` already know how to finish
(see `supervisor/states.py` for the finite list, and docs/operations.md "Recovery").

Crash-only rules kept here: the repository lock comes before anything is read or written; a
proposal file leaves the outbox only after its verdict (or its drop) is on disk; the agent is
stopped before its workspace is judged or removed; an engine that stops answering and a disk
that fills up are waited out, never turned into a verdict; shutdown always stops the agent.
"""

from __future__ import annotations

import errno
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

from sandbox.engine import Engine
from sandbox.errors import SandboxError
from supervisor import control, notify, outbox, systemd  # control/notify/systemd: operator hooks
from supervisor.agent_container import AgentRun, give_to_agent
from supervisor.agent_keeper import AgentKeeper
from supervisor.appendfile import is_disk_full
from supervisor.candidates import CandidateError, CandidateRecord
from supervisor.errors import OuroborosError
from supervisor.gate_weather import GateInterruptedError
from supervisor.gatekeeper import Gatekeeper
from supervisor.rollback import RollbackError
from supervisor.verdicts import Verdict, VerdictSummary
from supervisor.git_ops import find_common_dir
from supervisor.instance import Instance, InstanceConfig
from supervisor.intake import Intake
from supervisor.journal_writer import JournalError
from supervisor import diskcap
from supervisor.diskcap import DiskWatch
from supervisor.logfile import RotatingLog, reopen_on_sighup
from supervisor.probation import Action, Probation
from supervisor.protocol import Proposal
from supervisor.route.metering import RouteEvent
from supervisor.route.server import LLMRoute
from supervisor.repo_lock import AlreadyRunningError as AlreadyRunningError  # re-exported for callers
from supervisor.repo_lock import HomeLock, RepoLock
from supervisor.services import ModelService
from supervisor.states import CandidateState, SupervisorState
from supervisor.status import Status, StatusFile

Progress = Callable[[str], None]
OUTBOX_POLL_S = 5.0
MAIN_CHECK_S = 2.0
EVENT_THROTTLE_S = 60.0
ENGINE_BACKOFF_MAX_S = 30.0
DISK_RETRY_S = 10.0
LAUNCH_TRIES = 3
MAINTAIN_EVERY = 200  # verdicts between `git pack-refs` + `git gc` (the repository turns auto-gc off)
MAINTAIN_AFTER_S = 6 * 3600.0
_S = SupervisorState


class GaveUpError(OuroborosError, RuntimeError):
    """Too many automatic rollbacks in a row: a person has to look."""


@dataclass
class Event:
    kind: str  # "proposal" | "exit" | "stop" | "tick" | "poll" (a tick that also looks at the outbox)
    run_id: str | None = None
    exit_code: int | None = None


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
        self.status = Status()
        self._status_file = StatusFile(instance.status_file)
        # Bounded: a supervisor that runs for weeks keeps no per-verdict state in memory.
        self.verdicts: deque[Verdict] = deque(maxlen=5)
        self.verdict_count = 0
        self._gatekeeper: Gatekeeper | None = None
        self._keeper: AgentKeeper | None = None
        self.probation: Probation | None = None
        self.current_commit: str | None = None
        self._models = ModelService(instance, self.config, self._on_route_event)
        self._log = RotatingLog(instance.agent_log, max_bytes=self.config.logs.agent_log_max_mb * 2**20,
                                keep=self.config.logs.agent_log_keep)
        self._disk_watch: DiskWatch | None = None
        self._repo_lock: RepoLock | None = None
        self._home_lock: HomeLock | None = None
        self._watcher: outbox.OutboxWatcher | None = None
        self._outbox = instance.run_dir / "outbox"
        self.restart_latencies: deque[float] = deque(maxlen=100)
        self.rollbacks = 0
        self._stop_requested = False
        self._main_checked_at = 0.0
        self._last_event_at: dict[str, float] = {}
        self._last_start_at = 0.0
        self._disk_retry_at = 0.0
        self._recovered = False
        self._intake: Intake | None = None
        self._maintained_at = time.monotonic()
        self._verdicts_since_maintenance = 0
        self._old_handlers: dict[int, Any] = {}
        self._proposal_queued = threading.Event()

    @property
    def gatekeeper(self) -> Gatekeeper:
        if self._gatekeeper is None:
            raise OuroborosError("the supervisor has not taken its repository yet (call run())")
        return self._gatekeeper

    @property
    def keeper(self) -> AgentKeeper:
        if self._keeper is None:
            raise OuroborosError("the supervisor has not taken its repository yet (call run())")
        return self._keeper

    @property
    def agent(self) -> AgentRun | None:
        """The agent's run in progress, if one is."""
        return self._keeper.agent if self._keeper is not None else None

    @property
    def route(self) -> LLMRoute | None:
        return self._models.route

    # -- lifecycle ------------------------------------------------------------------------------

    def run(self) -> int:
        self._take_locks()  # before anything is read or written: a second supervisor stops here
        # Before anything slow: a SIGTERM during start-up is queued and handled by the loop.
        self._install_signal_handlers()
        try:
            self._prepare()
            if not self._stop_requested:
                self._handle_proposals()  # left by a run that was killed: gate before the agent restarts
            if self.agent is None and not self._stop_requested and self.status.state is not _S.DISK_FULL:
                self._launch_safely(reason="start")
            return self._loop()
        except GateInterruptedError as exc:
            self.progress(f"stopped while waiting for the engine: {exc}")
            return 0
        finally:
            self._shutdown()

    def request_stop(self) -> None:
        self._stop_requested = True
        self.events.put(Event("stop"))

    def _take_locks(self) -> None:
        self._repo_lock = RepoLock(find_common_dir(self.instance.repo)).acquire(self.instance.home)
        try:
            self._home_lock = HomeLock(self.instance.run_dir, self.instance.pid_file, self.instance.home).acquire()
        except BaseException:
            self._repo_lock.release()
            raise
        control.clear(self.instance.run_dir)  # a stop request left for an earlier run is not for this one

    def _prepare(self) -> None:
        self._gatekeeper = Gatekeeper(self.instance.repo, self.engine, journal_root=self.instance.journal,
                                      image=self.image, instance=self.instance.instance_id)
        self._gatekeeper.engine_wait = self._wait_for_engine
        self._gatekeeper.warn = self.progress
        self._keeper = AgentKeeper(self.instance, self.config, self.engine, self.image, self._gatekeeper,
                                   self._log, self._agent_exited, self.progress)
        if not self._wait_for_engine():
            return
        removed = self.engine.reconcile(instance=self.instance.instance_id)
        if removed:
            self.progress(f"removed {len(removed)} leftover container(s) of an earlier run")
        outbox.prepare(self._outbox)
        self._intake = Intake(self.gatekeeper, self._outbox, self.progress, self._refused)
        self._recover()
        self._disk_watch = self._cap_agent_disk()  # before the agent's folders are prepared
        for folder in (self.instance.journal, self.instance.goals):
            folder.mkdir(parents=True, exist_ok=True)
            give_to_agent(folder)
        notify.start(self.instance, self.config, self.progress)
        self._models.start()
        self._watcher = outbox.OutboxWatcher(self._outbox, self._proposal_arrived).start()

    def _recover(self) -> None:
        """Finish what an earlier run left (a full disk makes this wait and retry, never fail the start)."""
        try:
            for action in self.gatekeeper.recover(abandon_pending=False):
                self.progress(f"recovered: {action}")
            self.gatekeeper.genesis()
            self._adopt_pending_candidate()
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            self._pause_for_disk(exc)
            return
        self._recovered = True

    def _adopt_pending_candidate(self) -> None:
        """Keep the newest workspace of the last run (its edits, maybe a proposal in the outbox); drop older ones."""
        main = self.gatekeeper.main()
        pending = [r for r in self.gatekeeper.store.active() if r.state == CandidateState.PENDING]
        # A kill inside create_candidate can leave a record without its worktree or .git file.
        usable = [r for r in pending if r.base == main and r.gitfile and Path(r.worktree, ".git").is_file()]
        keep = usable[-1] if usable else None
        for record in pending:
            if record is not keep:
                self.gatekeeper.abandon(record.id, "a newer workspace or a new main replaced it")
                self.progress(f"abandoned stale candidate {record.id}")
        if keep is not None:
            self.keeper.candidate = keep
            self.progress(f"resuming candidate {keep.id} and its workspace")

    def _shutdown(self) -> None:
        """Every step is tried even if an earlier one failed (a full disk, a gone engine); the agent is
        always stopped, the pid file always removed, the locks always released."""
        steps: list[tuple[str, Callable[[], None]]] = [
            ("publish stopping", lambda: self._set_state(_S.STOPPING)),
            ("stop the agent", self._stop_agent),
            ("stop the outbox watcher", lambda: self._watcher.stop() if self._watcher else None),
            ("stop the LLM route", self._models.stop_route),
            ("stop the scripted model", self._models.stop_model),
            ("publish stopped", self._publish_stopped),
            ("close the agent log", self._log.close),
            ("restore signal handlers", self._restore_signal_handlers),
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

    def _publish_stopped(self) -> None:
        self.status.agent_container = None
        self._set_state(_S.STOPPED)

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._old_handlers[signum] = signal.signal(signum, lambda *_: self.request_stop())
        reopen_on_sighup()  # logrotate: agent.log is reopened at the next write

    def _restore_signal_handlers(self) -> None:
        for signum, handler in self._old_handlers.items():
            signal.signal(signum, handler)
        self._old_handlers.clear()

    def _cap_agent_disk(self) -> DiskWatch:
        """Each host area the agent writes on its own size-capped filesystem (supervisor/diskcap.py)."""
        disk = self.config.disk
        areas = diskcap.agent_areas(
            worktrees=self.gatekeeper.worktrees, memory=self.instance.memory, outbox=self.instance.run_dir / "outbox",
            workspace_mb=disk.workspace_mb, memory_mb=disk.memory_mb, outbox_mb=disk.outbox_mb,
        )
        for message in diskcap.cap_areas(areas, self.instance.disk_images, disk.mode):
            self.progress(message)
        return DiskWatch(areas)

    # -- the decision loop ----------------------------------------------------------------------

    def _loop(self) -> int:
        polled_at = time.monotonic()
        while True:
            try:
                event = self.events.get(timeout=0.5)
            except queue.Empty:
                event = Event("tick")
            if event.kind == "stop" or self._stop_requested:
                self.progress("stopping: SIGTERM or `supervisor stop`")
                return 0
            if event.kind == "tick" and (time.monotonic() - polled_at > OUTBOX_POLL_S
                                         or self.status.state is _S.DISK_FULL):
                polled_at = time.monotonic()
                event = Event("poll")  # a safety net under watchfiles (inotify limits, a dead thread)
            try:
                self._dispatch(event)
            except OSError as exc:  # a full disk anywhere (a log record, a status, an export) is weather
                if not is_disk_full(exc):
                    raise
                self._pause_for_disk(exc)
            if self.stop_when is not None and self.stop_when(self):
                return 0

    def _proposal_arrived(self) -> None:
        """From the watcher thread: at most one proposal event is queued at a time, however busy the
        agent (each event looks at the whole outbox), so the queue cannot grow without bound."""
        if not self._proposal_queued.is_set():
            self._proposal_queued.set()
            self.events.put(Event("proposal"))

    def _dispatch(self, event: Event) -> None:
        if event.kind == "proposal":
            self._proposal_queued.clear()
            self._handle_proposals()
        elif event.kind == "exit" and self.agent and event.run_id == self.agent.run_id:
            self._handle_exit(event.exit_code)
        elif event.kind == "poll":
            self._handle_proposals()
            self._tick()
        elif event.kind == "tick":
            self._tick()

    def _tick(self) -> None:
        if control.stop_requested(self.instance.run_dir):
            self.request_stop()  # `supervisor stop` from another PID namespace (docs/operations.md)
        now = time.monotonic()
        if self.status.state is _S.DISK_FULL:
            self._write_status()
            return
        # Only a generation that is actually running can prove itself.
        if self.agent is not None and self.probation and self.probation.passed(now):
            generation = self.status.generation
            self.gatekeeper.log.append("probation-passed", commit=self.current_commit, generation=generation)
            self.progress(f"generation {generation} survived probation: marked good")
        if now - self._main_checked_at < MAIN_CHECK_S:
            self._write_status()
            return
        self._main_checked_at = now  # each look at main is a git process: not on every tick, for weeks
        for message in self._disk_watch.newly_full() if self._disk_watch else []:
            self._refused("disk-full", message)  # the agent gets ENOSPC; the supervisor says so and runs on
        main = self.gatekeeper.main()
        if main != self.current_commit and not self._stop_requested:
            # An operator moved main (approve, rollback): follow it, after gating what the agent
            # already proposed on the old workspace.
            self._handle_proposals()
            if self.gatekeeper.main() == self.current_commit:
                return
            self.progress(f"main moved to {main[:12]} outside the agent loop; restarting on it")
            self._relaunch(reason="main moved", after_rollback=False)
        self.status.probation = "passed" if self.probation and self.probation.good else "on probation"
        self._write_status()

    # -- proposals ------------------------------------------------------------------------------

    def _handle_proposals(self) -> None:
        """Gate what is in the outbox; a full disk pauses gating (status says so) instead of deciding."""
        if self.status.state is _S.DISK_FULL:
            if time.monotonic() < self._disk_retry_at:
                return
            if self.gatekeeper.disk_full():
                self._pause_for_disk(OSError(errno.ENOSPC, "still no space left"))
                return
        try:
            if not self._recovered:
                self._recover()
                if not self._recovered:
                    return
            self._gate_pending()
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            self._pause_for_disk(exc)
            return
        if self.status.state is _S.DISK_FULL:
            self.progress("there is disk space again: gating resumes")
            self._set_state(_S.RUNNING, "")
            if self.agent is None and not self._stop_requested:
                self._launch_safely(reason="disk space freed")

    def _pause_for_disk(self, exc: BaseException) -> None:
        self._disk_retry_at = time.monotonic() + DISK_RETRY_S
        if self.status.state is not _S.DISK_FULL:
            self.progress(f"disk full: gating paused until there is room ({exc})")
        self._set_state(_S.DISK_FULL, f"disk full, gating paused: {str(exc)[:300]}")

    def _gate_pending(self) -> None:
        if self._stop_requested or self._intake is None:
            return  # what is queued stays in the outbox for the next start
        found = self._intake.next()
        if found is None:
            return
        verdict = self._judge(found.proposal, found.recorded)
        outbox.discard(found.path)
        # Whatever else is queued was written on the workspace that was just judged and replaced
        # (the agent was stopped before the gate, so nothing of its next run is among them).
        self._intake.drop_stale()
        self._after_verdict(verdict)

    def _judge(self, proposal: Proposal, recorded: CandidateRecord | None) -> Verdict:
        self._stop_agent()  # the agent must not touch what is being judged, nor the worktree being removed
        self._set_state(_S.GATING, proposal.summary)
        if recorded is not None and recorded.state != CandidateState.PENDING:
            self.progress(f"resuming proposal {proposal.id[:8]} on candidate {recorded.id} ({recorded.state.value})")
            verdict = self.gatekeeper.resume(recorded)
        else:
            candidate = recorded or self._candidate_for_proposal(proposal)
            self.progress(f"gating proposal {proposal.id[:8]} on candidate {candidate.id}: {proposal.summary}")
            verdict = self.gatekeeper.submit(candidate, proposal)
        return verdict

    def _candidate_for_proposal(self, proposal: Proposal) -> CandidateRecord:
        """The pending workspace the proposal was written on; or, if that run's workspace is gone (a
        stop or kill between its proposal and its verdict), a fresh candidate so it still gets a verdict."""
        current = self.keeper.candidate
        if current is not None:
            try:
                record = self.gatekeeper.store.load(current.id)
            except CandidateError:
                record = None
            if record is not None and record.state == CandidateState.PENDING:
                return record
        self.progress(f"proposal {proposal.id[:8]} has no workspace left; it is judged on a fresh candidate")
        self.keeper.candidate = self.gatekeeper.create_candidate()
        return self.keeper.candidate

    def _after_verdict(self, verdict: Verdict) -> None:
        self.verdicts.append(verdict)
        self.verdict_count += 1
        self.status.verdicts = [VerdictSummary.model_validate(v.model_dump(include=set(VerdictSummary.model_fields)))
                                for v in self.verdicts]
        stopping = self._stop_requested or bool(self.stop_when and self.stop_when(self))
        if verdict.state == CandidateState.ACCEPTED:
            self.progress(f"accepted: main is now {(verdict.commit or '')[:12]} (generation {verdict.generation})")
            verdict_at = time.monotonic()
            if not stopping:
                self._relaunch(reason=f"generation {verdict.generation} accepted", after_rollback=False)
                self.restart_latencies.append(self._last_start_at - verdict_at)
        else:
            why = "; ".join(verdict.reasons)[:300] or verdict.state
            self.progress(f"{verdict.state}: candidate {verdict.candidate} ({why}); agent stays on generation "
                          f"{self.status.generation}")
            if not stopping:
                # The workspace returns to main: the agent restarts on the same generation.
                self._relaunch(reason=f"candidate {verdict.candidate} {verdict.state}", after_rollback=False)
        self._set_state(_S.RUNNING, "")
        self._maybe_maintain()

    def _maybe_maintain(self) -> None:
        self._verdicts_since_maintenance += 1
        now = time.monotonic()
        if self._verdicts_since_maintenance < MAINTAIN_EVERY and now - self._maintained_at < MAINTAIN_AFTER_S:
            return
        self._verdicts_since_maintenance, self._maintained_at = 0, now
        try:
            self.gatekeeper.maintain()
        except OuroborosError as exc:
            self.progress(f"git maintenance failed ({exc}); it is tried again later")

    def _note(self, kind: str, body: str) -> None:
        """Journal for the agent; a sabotaged journal is logged, never allowed to stop the supervisor."""
        try:
            self.gatekeeper.journal.write(kind, body)
        except (JournalError, OSError) as exc:
            self.gatekeeper.log.append("journal-refused", details={"kind": kind, "error": str(exc)[:300]})

    def _refused(self, kind: str, message: str) -> None:
        """Log a refusal, at most once a minute per kind: a hostile agent can repeat it forever."""
        now = time.monotonic()
        if now - self._last_event_at.get(kind, -EVENT_THROTTLE_S) < EVENT_THROTTLE_S:
            return
        self._last_event_at[kind] = now
        self.progress(message)
        try:
            self.gatekeeper.log.append(kind, details={"message": message[:500]})
        except OSError as exc:  # a full disk: the refusal itself still holds
            self.progress(f"could not log {kind}: {exc}")
            return
        self._note(kind, message)

    def _handle_exit(self, code: int | None) -> None:
        self.status.agent_container = None
        # A stopping engine stops its containers too (exit 143/137 after it closed its API): that is
        # the engine's weather, not a crash of the generation.
        if code is None or not self.engine.ping():
            self._engine_lost_agent()
            return
        if self.gatekeeper.disk_full():  # weather, not the generation's fault: restarted once there is room
            self._pause_for_disk(OSError(errno.ENOSPC, f"the agent exited ({code}) while the disk is full"))
            return
        if code == 0 and self.config.agent.max_cycles is not None:
            self.progress("the agent finished its cycles (exit 0); it stays stopped until main changes")
            self._set_state(_S.IDLE)
            return
        now = time.monotonic()
        if self.probation is None:
            self.probation = Probation(self.config.probation, started_at=now)
        action = self.probation.on_crash(now)
        self.gatekeeper.log.append("agent-crashed", commit=self.current_commit, generation=self.status.generation,
                                   details={"exit_code": code, "action": action.value})  # for the scorecard
        self.status.restarts += 1
        self.progress(f"agent crashed (exit {code}): {action.value}")
        if action is Action.RESTART:
            if self._pause_unless_stopped(self.probation.restart_delay()):
                return
            self._relaunch(reason=f"crash (exit {code})", after_rollback=False, keep_probation=True)
        elif action is Action.ROLLBACK:
            self._roll_back()
        else:
            self._give_up(f"generation {self.status.generation} crash-loops and "
                          f"{self.probation.consecutive_rollbacks} automatic rollbacks in a row did not help")

    def _roll_back(self) -> None:
        try:
            result = self.gatekeeper.rollback()
        except RollbackError as exc:
            self._give_up(f"generation {self.status.generation} crash-loops and cannot be rolled back ({exc})")
            return
        self._note(
            "probation-rollback",
            f"Generation {self.status.generation} crashed more than {self.config.probation.max_restarts} times "
            f"in {self.config.probation.window_s:g} s after its restart, so main was rolled back to "
            f"{result.target} (generation {result.generation}).",
        )
        self.rollbacks += 1
        self.progress(f"rolled back to generation {result.generation} ({result.target[:12]}): crash loop")
        self._relaunch(reason="probation rollback", after_rollback=True)

    def _pause_unless_stopped(self, seconds: float) -> bool:
        """Wait without making a stop request wait too; True if one came."""
        deadline = time.monotonic() + seconds
        while not self._stop_requested and time.monotonic() < deadline:
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        return self._stop_requested

    def _give_up(self, message: str) -> None:
        self.gatekeeper.log.append("gave-up", commit=self.current_commit, details={"reason": message})
        self._note("supervisor-gave-up", message)
        raise GaveUpError(f"{message}; inspect `supervisor log` and `supervisor logs`, fix main, then start again")

    # -- the engine's weather -------------------------------------------------------------------

    def _wait_for_engine(self, pause_s: float = 0.0) -> bool:
        """Pause `pause_s` (after the engine failed a gate), then back off until the engine answers;
        status shows the wait, a stop cuts it short. False if a stop came first."""
        if not pause_s and self.engine.ping():
            return True
        before = self.status.state
        if pause_s:
            why = f"the container engine failed a gate; asking it again in {pause_s:g} s"
        else:
            why = f"the container engine does not answer; waiting for it (backing off up to {ENGINE_BACKOFF_MAX_S:g} s)"
        self._set_state(_S.WAITING_FOR_ENGINE, why)
        self.progress(why)
        if pause_s and self._pause_unless_stopped(pause_s):
            return False
        delay = 0.5
        while not self.engine.ping():
            if self._pause_unless_stopped(delay):
                return False
            delay = min(delay * 2, ENGINE_BACKOFF_MAX_S)
        self.progress("the container engine answers")
        self._set_state(before if before is not _S.WAITING_FOR_ENGINE else _S.RUNNING, "")
        keep = {self.agent.run_id} if self.agent is not None else set()
        try:
            self.engine.reconcile(instance=self.instance.instance_id, keep_run_ids=keep)
        except SandboxError as exc:  # an engine that flaps again: what is left carries our labels, next time
            self.progress(f"could not remove leftover containers yet ({exc})")
        return True

    def _engine_lost_agent(self) -> None:
        """The agent's container ended with no exit status: the engine went away. Not a crash of the
        generation: once the engine is back, the agent is re-adopted if it still runs, else restarted
        once."""
        run = self.agent
        if run is None or not self._wait_for_engine():
            return
        try:
            alive = run.container.is_running()
        except SandboxError:
            alive = False
        if alive and self.agent is run:
            self.progress("the agent survived the engine's restart: re-adopted")
            self.keeper.watch(run)
            self.status.agent_container = run.container.id
            return
        self.progress("the agent did not survive the engine's restart: starting it again")
        self._relaunch(reason="engine restarted", after_rollback=False, keep_probation=True)

    # -- starting and stopping the agent ----------------------------------------------------------

    def _relaunch(self, reason: str, after_rollback: bool, keep_probation: bool = False) -> None:
        self._stop_agent()
        if self._stop_requested:
            return  # the loop is about to shut down: starting an agent now would only be killed again
        self._launch_safely(reason, after_rollback=after_rollback, keep_probation=keep_probation)

    def _launch_safely(self, reason: str, after_rollback: bool = False, keep_probation: bool = False) -> None:
        """Start the agent; an engine that does not answer is waited for, a few times, never fatal at once."""
        for attempt in range(1, LAUNCH_TRIES + 1):
            try:
                self._launch(reason, after_rollback=after_rollback, keep_probation=keep_probation)
                return
            except SandboxError as exc:
                self.progress(f"could not start the agent (try {attempt} of {LAUNCH_TRIES}): {exc}")
                self._stop_agent()
                if attempt == LAUNCH_TRIES or not self._wait_for_engine():
                    if self._stop_requested:
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
        run = self.keeper.start(main, generation, self.route, reason, running=self.current_commit)
        self._last_start_at = time.monotonic()
        self.current_commit = main
        if new_generation:
            self.status.generation_since = datetime.now(UTC)
        self.status.change_state(_S.RUNNING)
        self.status.generation = generation
        self.status.commit = main
        candidate = self.keeper.candidate.id if self.keeper.candidate else None
        self.status.candidate = candidate
        self.status.agent_container = run.container.id
        self._write_status()
        self.progress(f"agent running: generation {generation} ({main[:12]}), candidate {candidate} [{reason}]")

    def _agent_exited(self, run_id: str, code: int | None) -> None:
        """From the keeper's waiter thread: the decision is the loop's."""
        self.events.put(Event("exit", run_id=run_id, exit_code=code))

    def _stop_agent(self) -> None:
        self.status.agent_container = None
        if self._keeper is not None:
            self._keeper.stop()

    # -- reporting ------------------------------------------------------------------------------

    def _on_route_event(self, event: RouteEvent) -> None:
        # Called from route threads; a refused agent may retry at the route's rate, hence the throttle.
        self._refused(f"route-{event.kind}", f"LLM route: {event.message}")

    def _set_state(self, state: SupervisorState, message: str | None = None) -> None:
        self.status.change_state(state, message)
        self._write_status()

    def _write_status(self) -> None:
        if self.route is not None:
            self.status.route_refusals = self.route.refusal_counts()
        self._status_file.write(self.status)  # a full disk leaves the old status; never worth a crash
        systemd.publish(self.status)

