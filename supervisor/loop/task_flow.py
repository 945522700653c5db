"""The agent's tasks under the event loop: give it the next one, take its "done", judge, record, deliver.

The agent is free when it holds no task; then the highest-priority queued task is claimed, its work
area made at the task's base commit, and the task published to the agent (docs/tasks.md). A
`task-result` message is trusted for nothing but "please judge now", and only for the task this
instance holds. The work area is withdrawn from the agent, committed by the supervisor's race-free
snapshot, marked `judging` (fenced), judged from outside by the project's own tests, and the
verdict recorded in the queue (fenced), the decision log and the agent's journal.

Crash-only: `recover` resumes each task this instance holds: a `judging` one is judged (its
verdict is written once: `finish` is fenced), a `running` one continues if its work area is whole,
else goes back to the queue. An engine that stops answering while judging leaves the task
`judging`; it is judged again on a later tick, never turned into a verdict.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sandbox.errors import SandboxError
from supervisor.base.git_ops import GitError
from supervisor.loop import outbox
from supervisor.loop.context import LoopContext
from supervisor.store.decision_kinds import DecisionKind
from supervisor.store.decision_log import DecisionLog
from supervisor.store.projects import ProjectConfig, ProjectError, ProjectRegistry
from supervisor.store.protocol import ProtocolError, TaskResult
from supervisor.store.tasks.models import Claim, Task, TaskState, TaskVerdict
from supervisor.store.tasks.queue import TaskQueue
from supervisor.work.delivery import DeliveryOutcome, auto_deliver
from supervisor.work.task_area import ActiveAttempt, TaskArea
from supervisor.work.task_judge import TaskJudge
from supervisor.work.task_snapshot import TASK_REFS, commit_work_area

LEASE_S = 24 * 3600.0  # one machine: the lease only has to outlast a restart; renewed every RENEW_S
RENEW_S = 60.0
MAX_SNAPSHOT_MB = 512
MAX_SETUP_FAILURES = 20  # tasks tried in one go when their work areas cannot be made
Note = Callable[[str, str], None]
Deliver = Callable[[Task, ProjectConfig, Path], DeliveryOutcome]
log = logging.getLogger(__name__)


class TaskFlow:
    def __init__(
        self,
        ctx: LoopContext,
        *,
        queue: TaskQueue,
        registry: ProjectRegistry,
        area: TaskArea,
        judge: TaskJudge,
        decisions: DecisionLog,
        note: Note,
        tokens: Callable[[], int],
        generation: Callable[[], int | None],
        deliver: Deliver | None = None,
    ) -> None:
        self.ctx = ctx
        self.worker = ctx.instance.instance_id
        self.queue = queue
        self.registry = registry
        self.area = area
        self.judge = judge
        self.decisions = decisions
        self.note = note  # (kind, body) into the agent's journal
        self.tokens = tokens  # tokens the route has served so far
        self.generation = generation  # the generation running: a verdict counts for it on the scorecard
        self.deliver = deliver
        self.active: ActiveAttempt | None = None
        self._renewed_at = 0.0
        self._unjudged: Claim | None = None  # judging interrupted by an outage: judged again on a tick

    # -- start-up ---------------------------------------------------------------------------------

    def recover(self) -> None:
        """Resume what this instance held when it last stopped (or was killed)."""
        self.area.prepare()
        remembered = self.area.recall()
        for task, claim in self.queue.held_by(self.worker):
            if task.state is TaskState.JUDGING:
                self._unjudged = claim
            elif (
                remembered is not None
                and remembered.claim.fence == claim.fence
                and self.area.path_for(task.project).is_dir()
                and self.active is None
            ):
                self.active = remembered
                self.area.publish(task)
                log.info("task %s: resumed (attempt %s)", task.id, claim.attempt)
            else:
                self._release(claim, task, "the supervisor restarted and the attempt's work area was gone")
        if self.active is None:
            self.area.withdraw()
            self.area.forget()
        self._judge_pending()
        self.assign()  # before the agent's first start: its first cycle already sees the task

    # -- the clock --------------------------------------------------------------------------------

    def tick(self) -> None:
        """One step of the attempt (below), then the next task's work area is made ahead while the agent works."""
        self._step()
        if not self.ctx.stop.requested:
            self._prepare_next()

    def _prepare_next(self) -> None:
        """The queue head's work area, so its claim only renames it into place (supervisor/work/task_area.py)."""
        names = self.registry.names()
        head = self.queue.peek(projects=names) if names else None
        if head is None:
            self.area.tidy()
        else:
            self.area.ahead(self.registry.mirror(head.project), head.project, head.base_commit)

    def _step(self) -> None:
        """Judge what an outage interrupted, end an attempt past its limits, renew, or start the next task."""
        if self._unjudged is not None:
            self._judge_pending()
            if self._unjudged is not None:
                return  # still waiting for the engine
        if self.active is None:
            self.assign()
            return
        task = self.queue.get(self.active.claim.task_id)
        if task.state not in (TaskState.RUNNING,) or task.fence != self.active.claim.fence:
            self._lost(task)  # cancelled by the operator, or no longer ours
            return
        project = self.registry.get(task.project)
        spent = self.tokens() - self.active.tokens_at_start
        elapsed = (datetime.now(UTC) - self.active.started_at).total_seconds()
        if spent > project.task_tokens or elapsed > project.task_deadline_s:
            why = (
                f"used {spent} tokens, more than the task's budget of {project.task_tokens}"
                if spent > project.task_tokens
                else f"ran {elapsed:.0f} s, past the task's deadline of {project.task_deadline_s:g} s"
            )
            self.area.withdraw()
            verdict = TaskVerdict(outcome="gave-up", reason=why, base_commit=task.base_commit, tokens=spent)
            self._finish(self.active.claim, task, verdict)
            return
        if time.monotonic() - self._renewed_at > RENEW_S:
            renewed = self.queue.renew(self.active.claim, LEASE_S)
            self._renewed_at = time.monotonic()
            if renewed is None:
                self._lost(task)
                return
            self.active = self.active.model_copy(update={"claim": renewed})
            self.area.remember(self.active)

    def assign(self) -> None:
        """Claim the next task and give it to the agent (nothing when the queue is empty). A task
        whose work area cannot be made is `infrastructure` and the next one is tried, a few per call."""
        for _ in range(MAX_SETUP_FAILURES):
            if self.active is not None or self.ctx.stop.requested or not self._start_next():
                return

    def _start_next(self) -> bool:
        """True when a task was claimed but could not be set up (so another may be tried)."""
        names = self.registry.names()
        claim = self.queue.claim(self.worker, LEASE_S, projects=names) if names else None
        if claim is None:
            return False
        task = self.queue.get(claim.task_id)
        try:
            self.area.create(self.registry.mirror(task.project), task.project, task.base_commit)
        except (ProjectError, GitError, OSError) as exc:
            verdict = TaskVerdict(
                outcome="infrastructure",
                reason=f"the work area could not be made at {task.base_commit[:12]}: {exc}",
                base_commit=task.base_commit,
            )
            self._finish(claim, task, verdict, journal=False)
            return True
        self.active = ActiveAttempt(
            claim=claim, project=task.project, tokens_at_start=self.tokens(), started_at=datetime.now(UTC)
        )
        self._renewed_at = time.monotonic()
        self.area.remember(self.active)
        self.area.publish(task)
        self.decisions.append(
            DecisionKind.TASK_STARTED,
            generation=self.generation(),
            details={"task": task.id, "attempt": claim.attempt, "project": task.project, "base": task.base_commit},
        )
        log.info("task %s started: %s (project %s)", task.id, task.title[:80], task.project)
        return False

    # -- the agent says it is done ---------------------------------------------------------------------

    def take_results(self, folder: Path) -> None:
        """Handle every task-result message in the outbox (proposals are the intake's)."""
        for path in outbox.pending(folder):
            try:
                message = outbox.read_message(path)
            except (ProtocolError, ValueError, OSError):
                continue  # not a message at all: the intake refuses it
            if isinstance(message, TaskResult):
                self._on_result(message)
                outbox.discard(path)
        self.assign()  # the agent is free again: its next task is ready before its next cycle

    def _on_result(self, message: TaskResult) -> None:
        active = self.active
        if active is None or message.task != active.claim.task_id:
            held = f"task {active.claim.task_id}" if active else "no task"
            self.decisions.append(
                DecisionKind.TASK_RESULT_REFUSED, details={"task": message.task, "message": message.id, "held": held}
            )
            self.note(
                "task-result-refused",
                f"Your task-result message for task {message.task} was refused: you hold {held}.",
            )
            return
        task = self.queue.get(active.claim.task_id)
        self.area.withdraw()
        project = self.registry.get(task.project)
        branch = f"task-{task.id}-{active.claim.attempt}"
        work = commit_work_area(
            self.registry.mirror(task.project),
            self.area.path_for(task.project),
            base_commit=task.base_commit,
            branch=branch,
            message=f"Task {task.id}: {task.title}\n\n{message.summary}\n\nTask-Id: {task.id}\n",
            max_files=project.max_files,
            max_mb=MAX_SNAPSHOT_MB,
        )
        self.active = active.model_copy(update={"refused": work.refused})
        self.area.remember(self.active)  # before `judging`: a re-judge after a kill still knows them
        if not self.queue.mark_judging(active.claim, work.commit, TASK_REFS + branch, message.summary):
            self._lost(task)
            return
        self._unjudged = active.claim
        self._judge_pending()

    # -- verdicts ---------------------------------------------------------------------------------

    def _judge_pending(self) -> None:
        claim = self._unjudged
        if claim is None:
            return
        task = self.queue.get(claim.task_id)
        if task.state is not TaskState.JUDGING or task.fence != claim.fence or task.result_commit is None:
            self._unjudged = None
            return
        try:
            project = self.registry.get(task.project)
            verdict = self.judge.judge(self.registry.mirror(task.project), project, task, task.result_commit)
        except SandboxError as exc:  # the engine, not the task: judged again once it answers
            log.warning("task %s: judging waits for the engine (%s)", task.id, exc)
            return
        except ProjectError as exc:
            verdict = TaskVerdict(
                outcome="infrastructure",
                reason=str(exc),
                base_commit=task.base_commit,
                result_commit=task.result_commit,
            )
        remembered = self.active if self.active and self.active.claim.fence == claim.fence else self.area.recall()
        spent = self.tokens() - remembered.tokens_at_start if remembered else 0
        refused = remembered.refused if remembered else []
        verdict = verdict.model_copy(update={"tokens": max(0, spent), "refused": refused})
        if refused and not verdict.needs_review:
            verdict = verdict.model_copy(
                update={
                    "needs_review": True,
                    "review_reasons": [*verdict.review_reasons, "the snapshot refused entries"],
                }
            )
        self._unjudged = None
        self._finish(claim, task, verdict)

    def _finish(self, claim: Claim, task: Task, verdict: TaskVerdict, *, journal: bool = True) -> None:
        applied = self.queue.finish(claim, verdict)
        self.decisions.append(
            DecisionKind.TASK_JUDGED,
            generation=self.generation(),
            commit=verdict.result_commit,
            details={
                "task": task.id,
                "attempt": claim.attempt,
                "project": task.project,
                "outcome": verdict.outcome,
                "reason": verdict.reason[:300],
                "tokens": verdict.tokens,
                "result": verdict.result_commit,
                "regressions": len(verdict.tests.regressions),
                "needs_review": verdict.needs_review,
                "applied": applied,
            },
        )
        if journal:
            self.note("task-verdict", verdict_note(task, verdict))
        log.info("task %s: %s (%s)", task.id, verdict.outcome, verdict.reason[:120])
        if applied and verdict.outcome == "passed" and self.deliver is not None:
            self._deliver(self.deliver, task)
        self._clear(task)

    def _deliver(self, deliver: Deliver, task: Task) -> None:
        """`[contribute] auto = "passed"`: a clean pass is pushed (never raises; a failure is recorded)."""
        outcome = deliver(self.queue.get(task.id), self.registry.get(task.project), self.registry.mirror(task.project))
        if outcome.action != "skipped":
            self.decisions.append(
                DecisionKind.TASK_DELIVERED,
                details={"task": task.id, "action": outcome.action, "reason": (outcome.error or outcome.reason)[:300]},
            )

    def _release(self, claim: Claim, task: Task, reason: str) -> None:
        applied = self.queue.release(claim, reason)
        self.decisions.append(
            DecisionKind.TASK_RELEASED, details={"task": task.id, "reason": reason[:300], "applied": applied}
        )

    def _lost(self, task: Task) -> None:
        """The task is no longer ours (cancelled, or its lease lost): stop working on it."""
        log.info("task %s is no longer held by this supervisor (%s); its work stops", task.id, task.state)
        self.note("task-withdrawn", f"Task {task.id} was withdrawn ({task.state}); stop working on it.")
        self._clear(task)

    def _clear(self, task: Task) -> None:
        if self.active is not None and self.active.claim.task_id != task.id:
            return  # another attempt runs: nothing here is this task's
        self.area.withdraw()
        self.area.remove(task.project)
        self.area.forget()
        self.active = None


def verdict_note(task: Task, verdict: TaskVerdict) -> str:
    """What the agent learns of a verdict: outcomes and test ids, never the hidden tests' source."""
    lines = [f"Task {task.id} ({task.title}): {verdict.outcome}.", f"Reason: {verdict.reason}"]
    tests = verdict.tests
    if tests.fail_to_pass_passed:
        lines.append("Now passing as required: " + ", ".join(tests.fail_to_pass_passed[:30]))
    if tests.fail_to_pass_failed:
        lines.append("Still failing (must pass): " + ", ".join(tests.fail_to_pass_failed[:30]))
    if tests.regressions:
        lines.append("Broken by the change (passed before): " + ", ".join(tests.regressions[:30]))
    if verdict.needs_review:
        lines.append("Marked for review: " + "; ".join(verdict.review_reasons[:10]))
    if verdict.refused:
        lines.append("Refused in the work area: " + "; ".join(verdict.refused[:10]))
    lines.append(f"Tokens: {verdict.tokens}")
    return "\n".join(lines)


def delivery_for(ctx: LoopContext) -> Deliver | None:
    """What a passed verdict triggers: `[contribute] auto = "passed"` pushes (docs/delivery.md)."""
    settings = ctx.config.contribute
    if settings.auto != "passed":
        return None

    def deliver(task: Task, project: ProjectConfig, mirror: Path) -> DeliveryOutcome:
        return auto_deliver(task, project, mirror, settings)

    return deliver
