"""`supervisor start`: run the agent in its container, gate its proposals, restart, watch probation.

One thread decides; everything else (the container's exit, a new proposal file, a signal, the
clock) only puts an event on a queue. So every decision happens in order, and a kill -9 at any
point leaves only states that `Gatekeeper.recover()` and `reconcile` already know how to finish.
"""

from __future__ import annotations

import fcntl
import os
import queue
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sandbox.engine import DockerEngine
from supervisor import lineage_view, outbox
from supervisor import control, notify, systemd  # operator hooks: stop file, notifications, sd_notify
from supervisor.agent_container import AgentRun, agent_spec, export_code, give_to_agent
from supervisor.candidates import CandidateRecord
from supervisor.errors import ConfigError, OuroborosError
from supervisor.gatekeeper import Gatekeeper, RollbackError, Verdict, VerdictSummary
from supervisor.instance import Instance, InstanceConfig
from supervisor.journal_writer import JournalError
from supervisor import diskcap
from supervisor.diskcap import DiskWatch
from supervisor.logfile import RotatingLog, reopen_on_sighup
from supervisor.probation import Action, Probation
from supervisor.protocol import ProtocolError
from supervisor.route.ledger import LEDGER_FILE_NAME, Ledger
from supervisor.route.metering import RouteEvent
from supervisor.route.server import SOCKET_NAME, LLMRoute
from supervisor.route.upstream import Upstream
from supervisor.status import Status, StatusFile

Progress = Callable[[str], None]
OUTBOX_POLL_S = 5.0
MAIN_CHECK_S = 2.0
EVENT_THROTTLE_S = 60.0


class AlreadyRunningError(OuroborosError, RuntimeError):
    """Another supervisor holds this instance."""


class GaveUpError(OuroborosError, RuntimeError):
    """Too many automatic rollbacks in a row: a person has to look."""


@dataclass
class Event:
    kind: str  # "proposal" | "exit" | "stop" | "tick"
    run_id: str | None = None
    exit_code: int | None = None


class Supervisor:
    """Owns one instance while it runs; `run()` returns the process exit code."""

    def __init__(
        self,
        instance: Instance,
        engine: DockerEngine,
        image: str,
        config: InstanceConfig | None = None,
        progress: Progress = lambda message: None,
        stop_when: Callable[["Supervisor"], bool] | None = None,
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
        self.verdicts: list[Verdict] = []
        self.gatekeeper = Gatekeeper(
            instance.repo, engine, journal_root=instance.journal, image=image,
            instance=instance.instance_id,
        )
        self.agent: AgentRun | None = None
        self.candidate: CandidateRecord | None = None
        self.probation: Probation | None = None
        self.current_commit: str | None = None
        self.route: LLMRoute | None = None
        self._scripted = None
        self._credential: str | None = None
        self._log = RotatingLog(instance.agent_log, max_bytes=self.config.logs.agent_log_max_mb * 2**20,
                                keep=self.config.logs.agent_log_keep)
        self._disk_watch: DiskWatch | None = None
        self._lock_handle = None
        self._watcher: outbox.OutboxWatcher | None = None
        self.restart_latencies: list[float] = []
        self.rollbacks = 0
        self._stop_requested = False
        self._main_checked_at = 0.0
        self._last_event_at: dict[str, float] = {}

    # -- lifecycle ------------------------------------------------------------------------------

    def run(self) -> int:
        self._take_lock()
        # Before anything slow: a SIGTERM during start-up is queued and handled by the loop.
        self._install_signal_handlers()
        try:
            self._prepare()
            if not self._stop_requested:
                self._handle_proposals()  # left by a run that was killed: gate before the agent restarts
            if self.agent is None and not self._stop_requested:
                self._launch(reason="start")
            return self._loop()
        finally:
            self._shutdown()

    def request_stop(self) -> None:
        self._stop_requested = True
        self.events.put(Event("stop"))

    def _take_lock(self) -> None:
        self.instance.run_dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.instance.run_dir / "supervisor.lock", "a+")
        for _ in range(10):
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(0.1)  # a `status` probe holds it for an instant; a supervisor holds it for good
        else:
            handle.close()
            pid = _read_pid(self.instance.pid_file)
            raise AlreadyRunningError(
                f"another supervisor (pid {pid or 'unknown'}) runs {self.instance.home}; "
                "stop it with `supervisor stop` first"
            )
        self._lock_handle = handle
        self.instance.pid_file.write_text(str(os.getpid()))
        control.clear(self.instance.run_dir)  # a stop request left for an earlier run is not for this one

    def _prepare(self) -> None:
        removed = self.engine.reconcile(instance=self.instance.instance_id)
        if removed:
            self.progress(f"removed {len(removed)} leftover container(s) of an earlier run")
        for action in self.gatekeeper.recover(abandon_pending=False):
            self.progress(f"recovered: {action}")
        self.gatekeeper.genesis()
        self._adopt_pending_candidate()
        self._disk_watch = self._cap_agent_disk()  # [route branch] before the agent's folders are prepared
        for folder in (self.instance.journal, self.instance.goals):
            folder.mkdir(parents=True, exist_ok=True)
            give_to_agent(folder)
        notify.start(self.instance, self.config, self.progress)
        self._outbox = self.instance.run_dir / "outbox"
        outbox.prepare(self._outbox)
        self._start_route()
        self._watcher = outbox.OutboxWatcher(self._outbox, lambda: self.events.put(Event("proposal"))).start()

    def _adopt_pending_candidate(self) -> None:
        """Keep the newest workspace of the last run (its edits, maybe a proposal in the outbox); drop older ones."""
        main = self.gatekeeper.main()
        pending = [r for r in self.gatekeeper.store.all() if r.state == "pending"]
        # A kill inside create_candidate can leave a record without its worktree or .git file.
        usable = [r for r in pending if r.base == main and r.gitfile and Path(r.worktree, ".git").is_file()]
        keep = usable[-1] if usable else None
        for record in pending:
            if record is not keep:
                self.gatekeeper.abandon(record.id, "a newer workspace or a new main replaced it")
                self.progress(f"abandoned stale candidate {record.id}")
        if keep is not None:
            self.candidate = keep
            self.progress(f"resuming candidate {keep.id} and its workspace")

    def _start_route(self) -> None:
        route_config = self.config.route
        environ = dict(os.environ)
        if self.config.scripted_scenario is not None:
            from scripted_model import ScriptedModelServer

            try:
                self._scripted = ScriptedModelServer(self._scenario_path()).start()
            except (ValueError, OSError) as exc:
                raise ConfigError(f"scripted_scenario {self._scenario_path()} cannot be served: {exc}; "
                                  f"fix the path or the file in {self.instance.config_path}") from exc
            route_config = route_config.model_copy(
                update={"upstream": route_config.upstream.model_copy(update={"base_url": self._scripted.url})}
            )
            environ.setdefault(route_config.upstream.api_key_env, "scripted-model-needs-no-key")
        upstream = Upstream.from_config(route_config.upstream, environ=environ)
        ledger = Ledger.open(self.instance.state / LEDGER_FILE_NAME)
        socket_dir = self.instance.run_dir / "llm"
        self.route = LLMRoute(route_config, ledger, upstream, self._on_route_event,
                              socket_path=socket_dir / SOCKET_NAME).start()

    def _scenario_path(self) -> Path:
        path = Path(self.config.scripted_scenario)
        return path if path.is_absolute() else self.instance.home / path

    def _shutdown(self) -> None:
        self.status.state = "stopping"
        self._write_status()
        if self.agent is not None:
            self._stop_agent()
        if self._watcher is not None:
            self._watcher.stop()
        if self.route is not None:
            self.route.stop()
            self.route.ledger.close()
        if self._scripted is not None:
            self._scripted.stop()
        self.status.state = "stopped"
        self.status.agent_container = None
        self._write_status()
        self._log.close()
        self.instance.pid_file.unlink(missing_ok=True)
        if self._lock_handle is not None:
            self._lock_handle.close()

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.request_stop())
        reopen_on_sighup()  # logrotate: agent.log is reopened at the next write

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
            if event.kind == "stop":
                self.progress("stopping: SIGTERM or `supervisor stop`")
                return 0
            if event.kind == "proposal":
                self._handle_proposals()
            elif event.kind == "exit" and self.agent and event.run_id == self.agent.run_id:
                self._handle_exit(event.exit_code)
            elif event.kind == "tick":
                if time.monotonic() - polled_at > OUTBOX_POLL_S:
                    polled_at = time.monotonic()
                    self._handle_proposals()  # a safety net under watchfiles (inotify limits, a dead thread)
                self._tick()
            if self.stop_when is not None and self.stop_when(self):
                return 0

    def _tick(self) -> None:
        if control.stop_requested(self.instance.run_dir):
            self.request_stop()  # `supervisor stop` from another PID namespace (docs/operations.md)
        now = time.monotonic()
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

    def _handle_proposals(self) -> None:
        for path in outbox.pending(self._outbox):
            if self._stop_requested:
                return  # the rest stays in the outbox for the next start
            try:
                proposal = outbox.read(path)
            except (ProtocolError, ValueError, OSError) as exc:
                outbox.discard(path)
                self._refused("proposal-refused", f"Your proposal file {path.name} was refused: {exc}")
                continue
            if self._already_recorded(proposal.id):
                outbox.discard(path)  # recorded before a crash; recover() has finished it
                continue
            self._gate(proposal)
            outbox.discard(path)
            # Whatever else is queued was written on the workspace that was just judged and replaced.
            for stale in outbox.pending(self._outbox):
                outbox.discard(stale)
                self._note("proposal-dropped", f"Proposal file {stale.name} arrived while an earlier proposal of "
                                                "the same workspace was being gated; that workspace is gone, so it "
                                                "was dropped. Propose again from your new workspace.")
            return

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
        self.gatekeeper.log.append(kind, details={"message": message[:500]})
        self._note(kind, message)
        self.progress(message)

    def _already_recorded(self, proposal_id: str) -> bool:
        return any(r.proposal is not None and r.proposal.id == proposal_id for r in self.gatekeeper.store.all())

    def _gate(self, proposal) -> None:
        assert self.candidate is not None
        self.status.state = "gating"
        self.status.message = proposal.summary
        self._write_status()
        self.progress(f"gating proposal {proposal.id[:8]} on candidate {self.candidate.id}: {proposal.summary}")
        verdict = self.gatekeeper.submit(self.candidate, proposal)
        self.verdicts.append(verdict)
        self.status.verdicts = [VerdictSummary.model_validate(v.model_dump(include=set(VerdictSummary.model_fields)))
                                for v in self.verdicts[-5:]]
        if verdict.state == "accepted":
            self.progress(f"accepted: main is now {verdict.commit[:12]} (generation {verdict.generation})")
            verdict_at = time.monotonic()
            if not (self.stop_when and self.stop_when(self)):
                self._relaunch(reason=f"generation {verdict.generation} accepted", after_rollback=False)
                self.restart_latencies.append(self._last_start_at - verdict_at)
        else:
            why = "; ".join(verdict.reasons)[:300] or verdict.state
            self.progress(f"{verdict.state}: candidate {verdict.candidate} ({why}); agent stays on generation "
                          f"{self.status.generation}")
            if not (self.stop_when and self.stop_when(self)):
                # The workspace returns to main: the agent restarts on the same generation.
                self._relaunch(reason=f"candidate {verdict.candidate} {verdict.state}", after_rollback=False)
        self.status.state = "running"
        self._write_status()

    def _handle_exit(self, code: int | None) -> None:
        self.status.agent_container = None
        if code == 0 and self.config.agent.max_cycles is not None:
            self.progress("the agent finished its cycles (exit 0); it stays stopped until main changes")
            self.status.state = "idle"
            self._write_status()
            return
        now = time.monotonic()
        assert self.probation is not None
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
            try:
                result = self.gatekeeper.rollback()
            except RollbackError as exc:
                self._give_up(f"generation {self.status.generation} crash-loops and cannot be rolled back ({exc})")
            self._note(
                "probation-rollback",
                f"Generation {self.status.generation} crashed more than {self.config.probation.max_restarts} times "
                f"in {self.config.probation.window_s:g} s after its restart, so main was rolled back to "
                f"{result.target} (generation {result.generation}).",
            )
            self.rollbacks += 1
            self.progress(f"rolled back to generation {result.generation} ({result.target[:12]}): crash loop")
            self._relaunch(reason="probation rollback", after_rollback=True)
        else:
            self._give_up(f"generation {self.status.generation} crash-loops and "
                          f"{self.probation.consecutive_rollbacks} automatic rollbacks in a row did not help")

    def _pause_unless_stopped(self, seconds: float) -> bool:
        """Wait before a restart without making a stop request wait too; True if one came."""
        deadline = time.monotonic() + seconds
        while not self._stop_requested and time.monotonic() < deadline:
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        return self._stop_requested

    def _give_up(self, message: str) -> None:
        self.gatekeeper.log.append("gave-up", commit=self.current_commit, details={"reason": message})
        self._note("supervisor-gave-up", message)
        raise GaveUpError(f"{message}; inspect `supervisor log` and `supervisor logs`, fix main, then start again")

    # -- starting and stopping the agent ----------------------------------------------------------

    def _relaunch(self, reason: str, after_rollback: bool, keep_probation: bool = False) -> None:
        self._stop_agent()
        if self._stop_requested:
            return  # the loop is about to shut down: starting an agent now would only be killed again
        self._launch(reason, after_rollback=after_rollback, keep_probation=keep_probation)

    def _launch(self, reason: str, after_rollback: bool = False, keep_probation: bool = False) -> None:
        main = self.gatekeeper.main()
        generation = self.gatekeeper.generation_of(main)
        new_generation = main != self.current_commit
        now = time.monotonic()
        if self.probation is None:
            self.probation = Probation(self.config.probation, started_at=now)
        elif new_generation and not keep_probation:
            self.probation = self.probation.next_generation(now, after_rollback=after_rollback)
        code_dir = self._code_dir(main)
        self.candidate = self._workspace_for(main)
        workspace = Path(self.candidate.worktree)
        run_id = f"{self.instance.instance_id}-{uuid.uuid4().hex[:8]}"
        if self._credential:
            self.route.revoke_credential(self._credential)
        self._credential = self.route.issue_credential(run_id)
        spec = agent_spec(
            image=self.image, instance_id=self.instance.instance_id, run_id=run_id,
            settings=self.config.agent, code_dir=code_dir, workspace=workspace,
            journal=self.instance.journal, goals=self.instance.goals, outbox=self._outbox,
            route_dir=self.route.socket_path.parent, route_env=self.route.agent_env(self._credential),
            generation=generation if generation is not None else -1,
        )
        spec = lineage_view.with_history(spec, self.instance)  # its lineage, read-only at /history
        self.gatekeeper.log.append("agent-started", commit=main, generation=generation,
                                   details={"run_id": run_id, "reason": reason[:200]})  # for the scorecard
        self.agent = AgentRun(self.engine, spec, self._log)
        self._last_start_at = time.monotonic()
        threading.Thread(target=self._await_exit, args=(self.agent,), daemon=True).start()
        self.current_commit = main
        if new_generation:
            self.status.generation_since = datetime.now(timezone.utc)
        self.status.state = "running"
        self.status.generation = generation
        self.status.commit = main
        self.status.candidate = self.candidate.id
        self.status.agent_container = self.agent.container.id
        self._write_status()
        self.progress(f"agent running: generation {generation} ({main[:12]}), candidate {self.candidate.id} "
                      f"[{reason}]")

    def _workspace_for(self, main: str) -> CandidateRecord:
        """Keep the candidate across a crash restart (the agent's edits survive); else a fresh one."""
        if self.candidate is not None:
            record = self.gatekeeper.store.load(self.candidate.id)
            if record.state == "pending" and record.base == main:
                return record
            if record.state == "pending":
                self.gatekeeper.abandon(record.id, f"main moved to {main[:12]} before a proposal arrived")
        record = self.gatekeeper.create_candidate()
        give_to_agent(Path(record.worktree))
        return record

    def _await_exit(self, run: AgentRun) -> None:
        code = run.container.wait(timeout_s=10**9)
        self.events.put(Event("exit", run_id=run.run_id, exit_code=code))

    def _stop_agent(self) -> None:
        if self.agent is None:
            return
        self.agent.stop(self.config.agent.stop_grace_s)
        self.agent = None
        self.status.agent_container = None

    def _code_dir(self, commit: str) -> Path:
        return export_code(self.gatekeeper.git, self.instance.run_dir / "code", commit, running=self.current_commit)

    # -- reporting ------------------------------------------------------------------------------

    def _on_route_event(self, event: RouteEvent) -> None:
        # Called from route threads; a refused agent may retry at the route's rate, hence the throttle.
        self._refused(f"route-{event.kind}", f"LLM route: {event.message}")

    def _write_status(self) -> None:
        self._status_file.write(self.status)
        systemd.publish(self.status)

def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
