"""The agent's tasks under the event loop: give it the next one, take its "done", judge, record, deliver.

The agent is free when it holds no task; then the highest-priority queued task is claimed, its work
area made at the task's base commit, and the task published to the agent (docs/tasks.md). A
`task-result` message is trusted for nothing but "please judge now", and only for the task this
instance holds. The work area is withdrawn from the agent, committed by the supervisor's race-free
snapshot, marked `judging` (fenced), judged from outside by the project's own tests, and the
verdict written to the queue (fenced); the decision log, the agent's journal and a delivery then
learn of it (supervisor/loop/task_verdicts.py). A running task's lease is renewed on the ticks;
while its work is committed and judged (no ticks) from a thread of its own (lease_keeper.py).

Crash-only: `recover` resumes each task this instance holds: a `judging` one is judged (its
verdict is written once: `finish` is fenced), a `running` one continues if its work area is whole,
else goes back to the queue. The note of the attempt (`active.json`) is written before its work
area is made and forgotten only after its verdict is logged, so a kill between the queue's verdict
and its `task-judged` record is logged at the next start, once. An engine that stops answering
while judging leaves the task `judging`; it is judged again on a later tick, never turned into a
verdict, and no other task starts meanwhile (attempts never overlap).

Nothing the agent or the operator does raises out of here: a project removed under a running task
puts the task back in the queue; a mirror that lost the base commit is `infrastructure`; a
`task-result` already taken before a kill is dropped quietly; refusals are throttled with the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sandbox.errors import SandboxError
from supervisor.base.git_ops import GitError
from supervisor.loop import outbox
from supervisor.loop.context import LoopContext
from supervisor.loop.lease_keeper import LeaseKeeper
from supervisor.loop.task_verdicts import Deliver, Note, TaskVerdicts
from supervisor.store.decision_kinds import DecisionKind
from supervisor.store.decision_log import DecisionLog
from supervisor.store.projects import ProjectError, ProjectRegistry
from supervisor.store.protocol import ProtocolError, TaskResult
from supervisor.store.tasks.models import Claim, Task, TaskError, TaskState, TaskVerdict
from supervisor.store.tasks.queue import TaskQueue
from supervisor.work.task_area import ActiveAttempt, TaskArea
from supervisor.work.task_judge import TaskJudge
from supervisor.work.task_snapshot import TASK_REFS, commit_work_area

LEASE_S = 24 * 3600.0  # one machine: the lease only has to outlast a restart; renewed every RENEW_S
RENEW_S = 60.0
Share = Callable[[Path, str, str], None]  # (mirror, ref, commit): the fleet's results repository gets it


@dataclass(frozen=True)
class Holding:
    """How this supervisor holds tasks: its name in the queue, its lease, whether it may claim now, and
    where results are shared. One machine: the defaults; a fleet node: supervisor/loop/fleet_node.py."""

    worker: str
    lease_s: float = LEASE_S
    renew_s: float = RENEW_S
    may_claim: Callable[[], bool] = lambda: True
    share: Share | None = None
    charge: Callable[[str | None], None] = lambda project: None  # the route's per-project cap (a fleet)


MAX_SNAPSHOT_MB = 512
MAX_SETUP_FAILURES = 20  # tasks tried in one go when their work areas cannot be made
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
        holding: Holding,
        deliver: Deliver | None = None,
    ) -> None:
        self.ctx = ctx
        self.holding = holding
        self.worker = holding.worker
        self.queue = queue
        self.registry = registry
        self.area = area
        self.judge = judge
        self.decisions = decisions
        self.note = note  # (kind, body) into the agent's journal
        self.tokens = tokens  # tokens the route has served so far
        self.generation = generation  # the generation running: a verdict counts for it on the scorecard
        self.verdicts = TaskVerdicts(
            queue=queue, registry=registry, decisions=decisions, note=note, generation=generation, deliver=deliver
        )
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
                and self.area.is_whole(task.project)
                and self.active is None
            ):
                self.active = remembered
                self.area.publish(task)
                self.holding.charge(task.project)
                log.info("task %s: resumed (attempt %s)", task.id, claim.attempt)
            else:
                self._release(claim, task, "the supervisor restarted and the attempt's work area was gone")
        if remembered is not None:
            self.verdicts.record_missed(remembered)
        if self.active is None:
            self.area.withdraw()
            if self._note_of(self._unjudged) is None:  # a judged attempt's note keeps its tokens and refusals
                self.area.forget()
        self.area.remove_others(self.active.project if self.active else None)
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
            self._late(self.active.claim, task)  # cancelled by the operator, or no longer ours
            return
        try:
            project = self.registry.get(task.project)
        except ProjectError as exc:
            self._project_gone(self.active.claim, task, exc)
            return
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
        if time.monotonic() - self._renewed_at > self.holding.renew_s:
            renewed = self.queue.renew(self.active.claim, self.holding.lease_s)
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
            if self.active is not None or self._unjudged is not None or self.ctx.stop.requested:
                return  # one attempt at a time: a task waiting for its verdict holds the agent's turn
            if not self._start_next():
                return

    def _start_next(self) -> bool:
        """True when a task was claimed but could not be set up (so another may be tried)."""
        names = self.registry.names()
        if not names or not self.holding.may_claim():
            return False
        claim = self.queue.claim(self.worker, self.holding.lease_s, projects=names)
        if claim is None:
            return False
        task = self.queue.get(claim.task_id)
        attempt = ActiveAttempt(
            claim=claim, project=task.project, tokens_at_start=self.tokens(), started_at=datetime.now(UTC)
        )
        self.area.remember(attempt)  # first: from here a kill is resumed, released or its verdict logged
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
        self.active = attempt
        self._renewed_at = time.monotonic()
        self.area.publish(task)
        self.holding.charge(task.project)  # the agent's requests count against the project's cap from now
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
                outbox.discard(path)  # after its fate is on disk: a kill before this finds it taken
        self.assign()  # the agent is free again: its next task is ready before its next cycle

    def _on_result(self, message: TaskResult) -> None:
        if self._unjudged is not None and message.task == self._unjudged.task_id:
            return  # said again while it waits for its verdict (an engine outage)
        active = self.active
        if active is None or message.task != active.claim.task_id:
            if not self._taken_before(message):
                self._refuse(message, f"task {active.claim.task_id}" if active else "no task")
            return
        task = self.queue.get(active.claim.task_id)
        if task.state is not TaskState.RUNNING or task.fence != active.claim.fence:
            self._late(active.claim, task)  # cancelled or taken before the agent said done: nothing to judge
            return
        renewed = self.queue.renew(active.claim, self.holding.lease_s)  # fenced: a late renewal is marked late
        if renewed is None:
            self._lost(task)  # its lease ran out before the agent said done: nothing of it is judged
            return
        active = self.active = active.model_copy(update={"claim": renewed})  # a whole lease to be judged in
        self._renewed_at = time.monotonic()
        self.area.withdraw()
        try:
            project = self.registry.get(task.project)
            mirror = self.registry.mirror(task.project)
        except ProjectError as exc:
            self._project_gone(active.claim, task, exc)
            return
        branch = f"task-{task.id}-{active.claim.attempt}"
        try:
            with self._kept(active.claim, "committed"):  # a big area's snapshot and its push take their time
                work = commit_work_area(
                    mirror,
                    self.area.path_for(task.project),
                    base_commit=task.base_commit,
                    branch=branch,
                    message=f"Task {task.id}: {task.title}\n\n{message.summary}\n\nTask-Id: {task.id}\n",
                    max_files=project.max_files,
                    max_mb=MAX_SNAPSHOT_MB,
                )
                self._share(mirror, TASK_REFS + branch, work.commit)
        except GitError as exc:  # the mirror, not the agent: e.g. a forced fetch lost the base commit
            reason = f"the work could not be committed in the project's mirror: {exc}"
            self._finish(
                active.claim,
                task,
                TaskVerdict(outcome="infrastructure", reason=reason[:20_000], base_commit=task.base_commit),
            )
            return
        self.active = active.model_copy(update={"refused": work.refused})
        self.area.remember(self.active)  # before `judging`: a re-judge after a kill still knows them
        if not self.queue.mark_judging(active.claim, work.commit, TASK_REFS + branch, message.summary):
            self._lost(task)
            return
        self._unjudged = active.claim
        self._judge_pending()

    def _share(self, mirror: Path, ref: str, commit: str) -> None:
        """A fleet node pushes the result ref to the shared results repository; a failure only costs that."""
        if self.holding.share is None:
            return
        try:
            self.holding.share(mirror, ref, commit)
        except GitError as exc:
            log.warning("task result %s was not shared with the fleet (%s); it stays in this node's mirror", ref, exc)

    def _taken_before(self, message: TaskResult) -> bool:
        """The message was acted on before a kill left its file: its task was marked judging with it."""
        try:
            task = self.queue.get(message.task)
        except (TaskError, OverflowError):  # no such task (or an id no database can hold)
            return False
        return task.state not in (TaskState.QUEUED, TaskState.RUNNING) and task.summary == message.summary

    def _refuse(self, message: TaskResult, held: str) -> None:
        """Logged and journaled once a minute at most (the log throttles it): the agent may repeat it forever."""
        written = self.decisions.append(
            DecisionKind.TASK_RESULT_REFUSED, details={"task": message.task, "message": message.id, "held": held}
        )
        if written is not None:
            self.note(
                "task-result-refused",
                f"Your task-result message for task {message.task} was refused: you hold {held}.",
            )

    # -- verdicts ---------------------------------------------------------------------------------

    def _judge_pending(self) -> None:
        claim = self._unjudged
        if claim is None:
            return
        task = self.queue.get(claim.task_id)
        if task.state is not TaskState.JUDGING or task.fence != claim.fence or task.result_commit is None:
            self._unjudged = None  # cancelled or taken while it waited: nothing here is ours any more
            self._clear(task)
            return
        try:
            project = self.registry.get(task.project)
            with self._kept(claim, "judged"):  # the project's tests may outlast the lease
                verdict = self.judge.judge(self.registry.mirror(task.project), project, task, task.result_commit)
        except SandboxError as exc:  # the engine, not the task: judged again once it answers
            log.warning("task %s: judging waits for the engine (%s)", task.id, exc)
            return
        except (ProjectError, GitError) as exc:  # the project or its mirror, never the agent's fault
            verdict = TaskVerdict(
                outcome="infrastructure",
                reason=str(exc)[:20_000],
                base_commit=task.base_commit,
                result_commit=task.result_commit,
            )
        remembered = self._note_of(claim)
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
        self._finish(claim, task, verdict)
        self._unjudged = None  # only now: a verdict the queue could not take (its database gone) is judged again

    def _kept(self, claim: Claim, doing: str) -> LeaseKeeper:
        """The claim's lease renewed every `renew_s` while this thread works on the task without ticking
        (ended before the task's next write: a renewal after a verdict would be late)."""
        return LeaseKeeper(self.queue, claim, lease_s=self.holding.lease_s, every_s=self.holding.renew_s, doing=doing)

    def _finish(self, claim: Claim, task: Task, verdict: TaskVerdict, *, journal: bool = True) -> None:
        applied = self.queue.finish(claim, verdict)
        self.verdicts.record(claim, task, verdict, applied=applied, journal=journal)
        self._clear(task)  # last: the attempt's note goes only after its verdict is logged

    def _note_of(self, claim: Claim | None) -> ActiveAttempt | None:
        """The supervisor's note of this very attempt (in memory, else on disk), or None."""
        if claim is None:
            return None
        for note in (self.active, self.area.recall()):
            if note is not None and (note.claim.task_id, note.claim.fence) == (claim.task_id, claim.fence):
                return note
        return None

    def _release(self, claim: Claim, task: Task, reason: str) -> None:
        applied = self.queue.release(claim, reason)
        self.decisions.append(
            DecisionKind.TASK_RELEASED, details={"task": task.id, "reason": reason[:300], "applied": applied}
        )

    def _project_gone(self, claim: Claim, task: Task, exc: ProjectError) -> None:
        """The operator removed the task's project: the task waits in the queue for it (never judged without it)."""
        self._release(claim, task, f"its project is gone ({exc}); it runs again once the project is added")
        self._lost(self.queue.get(task.id))

    def _late(self, claim: Claim, task: Task) -> None:
        """The attempt ended without this supervisor (its lease ran out and another node took the task,
        or the operator cancelled it), which it learnt by reading: its write is still made, fenced, so
        the queue refuses it and records the attempt as late (`refused_late`); then the work stops."""
        self.queue.renew(claim, self.holding.lease_s)
        self._lost(task)

    def _lost(self, task: Task) -> None:
        """The task is no longer ours (cancelled, or its lease lost): stop working on it."""
        log.info("task %s is no longer held by this supervisor (%s); its work stops", task.id, task.state)
        self.note("task-withdrawn", f"Task {task.id} was withdrawn ({task.state}); stop working on it.")
        self._clear(task)

    def _clear(self, task: Task) -> None:
        if self.active is not None and self.active.claim.task_id != task.id:
            return  # another attempt runs: nothing here is this task's
        self.holding.charge(None)
        self.area.withdraw()
        self.area.remove(task.project)
        self.area.forget()
        self.active = None
