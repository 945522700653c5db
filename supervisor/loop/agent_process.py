"""The one agent container of a running supervisor: its workspace, its code, its route credential.

The event loop decides when the agent starts and stops; this module knows how. A start picks the
workspace (kept across a crash restart so the agent's edits survive, else a fresh candidate),
exports the generation's code read-only, rotates the run's credential on the LLM route, and starts
the hardened container with the agent's lineage mounted read-only. Every exit is reported once as
`(run_id, exit code or None)` to `on_exit`, from a waiter thread; None means the engine went away.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from sandbox.errors import SandboxError
from supervisor.base.errors import OuroborosError
from supervisor.gate.agent_container import (
    AgentFolders,
    AgentRun,
    agent_spec,
    export_code,
    give_to_agent,
    live_command,
)
from supervisor.gate.gatekeeper import Gatekeeper
from supervisor.loop import lineage_view
from supervisor.loop.context import LoopContext
from supervisor.route.server import LLMRoute
from supervisor.store.agent_log import RotatingLog
from supervisor.store.candidates import CandidateError, CandidateRecord
from supervisor.store.decision_kinds import DecisionKind
from supervisor.store.states import CandidateState
from supervisor.work.task_area import TaskArea

ExitSink = Callable[[str, int | None], None]
log = logging.getLogger(__name__)


class AgentProcess:
    """Starts, watches and stops the agent; `run` is the run in progress (None when none is)."""

    def __init__(
        self,
        ctx: LoopContext,
        *,
        image: str,
        gatekeeper: Gatekeeper,
        log: RotatingLog,
        on_exit: ExitSink,
        task_area: TaskArea,
    ) -> None:
        self.instance = ctx.instance
        self.config = ctx.config
        self.engine = ctx.engine
        self.image = image
        self.gatekeeper = gatekeeper
        self.log = log
        self.on_exit = on_exit
        self.task_area = task_area  # mounted in every run: the task, when one is given, appears there
        self.run: AgentRun | None = None
        self._ended_run: str | None = None  # the run whose end was recorded last (`_record_end`)
        self._end_lock = threading.Lock()  # the exit watcher and `stop` may both report one end
        self.candidate: CandidateRecord | None = None  # the workspace the agent writes in
        self._credential: str | None = None

    def start(
        self, main: str, generation: int | None, route: LLMRoute | None, reason: str, running: str | None
    ) -> AgentRun:
        """Start the agent on `main`; `running` is the commit whose code a running agent still mounts."""
        if route is None or route.socket_path is None:
            raise OuroborosError("the LLM route is not running; the agent cannot start without it")
        code_dir = export_code(self.gatekeeper.git, self.instance.run_dir / "code", main, running=running)
        self.candidate = self.workspace_for(main)
        run_id = f"{self.instance.instance_id}-{uuid.uuid4().hex[:8]}"
        if self._credential:
            route.revoke_credential(self._credential)
        self._credential = route.issue_credential(run_id)
        folders = AgentFolders(
            code=code_dir,
            workspace=Path(self.candidate.worktree),
            journal=self.instance.journal,
            goals=self.instance.goals,
            outbox=self.instance.outbox,
            route_dir=route.socket_path.parent,
            history=lineage_view.folder_for(self.instance),  # its lineage, read-only at /history
            projects=self.task_area.projects,
            task=self.task_area.task_dir,
        )
        spec = agent_spec(
            image=self.image,
            instance_id=self.instance.instance_id,
            run_id=run_id,
            role="agent",
            settings=self.config.agent,
            folders=folders,
            route_env=route.agent_env(self._credential),
            generation=generation if generation is not None else -1,
            command=live_command(self.config.agent),
        )
        self.gatekeeper.log.append(
            DecisionKind.AGENT_STARTED,
            commit=main,
            generation=generation,
            details={"run_id": run_id, "reason": reason[:200]},
        )  # for the scorecard
        try:
            self.run = AgentRun(self.engine, spec, self.log)
        except BaseException:
            self._record_end(run_id, None)  # a start the engine refused is a run that ended at once
            raise
        self.watch(self.run)
        return self.run

    def resume_in(self, candidate: CandidateRecord) -> None:
        """The workspace the agent writes in from its next start (a pending candidate it left, or
        the stand-in made for its proposal)."""
        self.candidate = candidate

    def workspace_for(self, main: str) -> CandidateRecord:
        """Keep the candidate across a crash restart (the agent's edits survive); else a fresh one."""
        if self.candidate is not None:
            try:
                record = self.gatekeeper.store.load(self.candidate.id)
            except CandidateError as exc:
                log.warning("%s; the agent gets a fresh workspace", exc)
            else:
                if record.state == CandidateState.PENDING and record.base == main:
                    return record
                if record.state == CandidateState.PENDING:
                    self.gatekeeper.abandon(record.id, f"main moved to {main[:12]} before a proposal arrived")
        record = self.gatekeeper.create_candidate()
        give_to_agent(Path(record.worktree))
        return record

    def watch(self, run: AgentRun) -> None:
        """Report the run's exit once it comes (also used to re-adopt a run after an engine restart)."""
        threading.Thread(target=self._await_exit, args=(run,), daemon=True).start()

    def _await_exit(self, run: AgentRun) -> None:
        code = run.container.wait(timeout_s=10**9)
        if code is not None:  # None: the engine went away, the run may live on (and be watched again)
            self._record_end(run.run_id, code)
        self.on_exit(run.run_id, code)

    def _record_end(self, run_id: str, code: int | None) -> None:
        """The end of a run, once (its exit and a `stop` after it are one end), for the scorecard's
        time alive; a crash is also recorded as one. The lock is held while the record is written: the
        loop's `stop` returns only once the end is on disk, whoever writes it, so no next run's start
        can come before it (a late end would close that run instead)."""
        with self._end_lock:
            if self._ended_run == run_id:
                return
            self._ended_run = run_id
            try:
                self.gatekeeper.log.append(DecisionKind.AGENT_STOPPED, details={"run_id": run_id, "exit_code": code})
            except (OSError, OuroborosError) as exc:  # a full disk: the scorecard counts to its last request
                log.warning("could not record the end of the agent's run: %s", exc)

    def stop(self) -> None:
        """Stop and remove the agent's container; an engine error is reported, never raised (whatever
        is left carries our labels and goes at the engine's return or the next start)."""
        run, self.run = self.run, None
        if run is None:
            return
        try:
            run.stop(self.config.agent.stop_grace_s)
        except SandboxError as exc:
            log.warning("could not stop the agent's container (%s); it is removed once the engine answers", exc)
        self._record_end(run.run_id, None)
