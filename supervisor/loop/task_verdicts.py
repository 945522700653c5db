"""A task's verdict once the queue has it: recorded in the decision log and the agent's journal, then delivered.

The flow (supervisor/loop/task_flow.py) decides and writes the verdict to the queue (fenced); this
module only tells of it: a `task-judged` record (with the generation running and whether the queue
applied it), the agent's journal note (outcomes and test ids, never the hidden tests' source), and,
with `[contribute] auto = "passed"`, the delivery of a clean pass that the queue applied
(docs/delivery.md). A kill between the queue's verdict and its record is recorded at the next start,
once (`record_missed`). Nothing here raises for a delivery failure: it is recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from supervisor.loop.context import LoopContext
from supervisor.store.decision_kinds import DecisionKind
from supervisor.store.decision_log import DecisionLog
from supervisor.store.projects import ProjectConfig, ProjectError, ProjectRegistry
from supervisor.store.tasks.models import VERDICTS, Claim, Task, TaskVerdict
from supervisor.store.tasks.queue import TaskQueue
from supervisor.work.delivery import DeliveryOutcome, auto_deliver
from supervisor.work.task_area import ActiveAttempt

Note = Callable[[str, str], None]  # (kind, body) into the agent's journal
Deliver = Callable[[Task, ProjectConfig, Path], DeliveryOutcome]
log = logging.getLogger(__name__)


class TaskVerdicts:
    def __init__(
        self,
        *,
        queue: TaskQueue,
        registry: ProjectRegistry,
        decisions: DecisionLog,
        note: Note,
        generation: Callable[[], int | None],
        deliver: Deliver | None = None,
    ) -> None:
        self.queue = queue
        self.registry = registry
        self.decisions = decisions
        self.note = note
        self.generation = generation  # the generation running: a verdict counts for it on the scorecard
        self.deliver = deliver

    def record(self, claim: Claim, task: Task, verdict: TaskVerdict, *, applied: bool, journal: bool = True) -> None:
        """The verdict into the decision log and the agent's journal; a clean pass delivered if so configured."""
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

    def record_missed(self, note: ActiveAttempt) -> None:
        """A kill between the queue's verdict and its `task-judged` record: logged now, once."""
        task = self.queue.get(note.claim.task_id)
        if task.state not in VERDICTS or task.fence != note.claim.fence or task.verdict is None:
            return
        last = self.decisions.find_recent(DecisionKind.TASK_JUDGED)
        details = last.details if last is not None else {}
        if details.get("task") == task.id and details.get("attempt") == note.claim.attempt:
            return  # logged; the kill came after (the note would have gone next)
        self.record(note.claim, task, task.verdict, applied=True)

    def _deliver(self, deliver: Deliver, task: Task) -> None:
        """`[contribute] auto = "passed"`: a clean pass is pushed (never raises; a failure is recorded)."""
        try:
            project, mirror = self.registry.get(task.project), self.registry.mirror(task.project)
        except ProjectError as exc:
            log.warning("task %s: not delivered, its project is gone (%s)", task.id, exc)
            return
        outcome = deliver(self.queue.get(task.id), project, mirror)
        if outcome.action != "skipped":
            self.decisions.append(
                DecisionKind.TASK_DELIVERED,
                details={"task": task.id, "action": outcome.action, "reason": (outcome.error or outcome.reason)[:300]},
            )


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
