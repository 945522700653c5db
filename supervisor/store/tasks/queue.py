"""The interface of a task queue; the embedded SQLite queue and (later) the fleet's PostgreSQL one keep it.

Rules every implementation keeps (tests/tasks/test_queue_contract.py):
- `claim` takes the queued task of highest priority (then oldest) in one atomic step, never the
  same task twice at once, and issues a fence larger than any before it for that task; a shared
  store (the fleet's PostgreSQL queue) also takes a held task whose lease has run out by the
  store's own clock (its holder died or stalled): that attempt ends and its fence is then stale;
- every call that takes a `Claim` applies only when the task is still held with that claim's fence
  (and, for `renew`, its lease has not run out by the store's own clock); otherwise it returns False
  and changes nothing but the attempt's `refused_late` mark;
- no call holds a lock or transaction after it returns;
- state changes go through `models.check_task`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from supervisor.store.tasks.models import Attempt, Claim, NewTask, Task, TaskState, TaskVerdict


class TaskQueue(Protocol):
    def add(self, new: NewTask) -> Task:
        """Queue one task."""
        ...

    def add_many(self, news: Iterable[NewTask]) -> list[Task]:
        """Queue all of them or none (an import); a repeated (project, external_id) raises TaskError."""
        ...

    def get(self, task_id: int) -> Task:
        """The task; TaskError if there is none with that id."""
        ...

    def find(
        self, *, states: Iterable[TaskState] | None = None, project: str | None = None, limit: int | None = None
    ) -> list[Task]:
        """Tasks by id, oldest first, optionally only in the given states or of one project."""
        ...

    def counts(self) -> dict[TaskState, int]:
        """How many tasks are in each state (every state present, zero included)."""
        ...

    def claim(self, worker: str, lease_s: float, *, projects: Iterable[str] | None = None) -> Claim | None:
        """The next queued task for `worker`, or None; its lease runs out `lease_s` from now."""
        ...

    def peek(self, *, projects: Iterable[str] | None = None) -> Task | None:
        """The task `claim` would take now with these `projects`, changing nothing (None: none queued);
        a hint only: another worker may claim it first (what the supervisor prepares ahead)."""
        ...

    def renew(self, claim: Claim, lease_s: float) -> Claim | None:
        """Extend a lease still held; None: the lease was lost (the caller stops the work)."""
        ...

    def held_by(self, worker: str) -> list[tuple[Task, Claim]]:
        """Tasks `worker` holds (running or judging), with their claims: what a restart resumes."""
        ...

    def mark_judging(self, claim: Claim, result_commit: str, result_branch: str, summary: str) -> bool:
        """The agent said it is done and the work is committed: now it is judged."""
        ...

    def finish(self, claim: Claim, verdict: TaskVerdict) -> bool:
        """Record the verdict (passed, failed, gave-up, infrastructure) of a held task."""
        ...

    def release(self, claim: Claim, reason: str) -> bool:
        """Give a held task back to the queue (a stop, an outage): the attempt ends unjudged."""
        ...

    def cancel(self, task_id: int, reason: str) -> Task:
        """Cancel a task that is not final yet; TaskError otherwise."""
        ...

    def retry(self, task_id: int) -> Task:
        """Queue a final task again; TaskError otherwise."""
        ...

    def attempts(self, task_id: int) -> list[Attempt]:
        """The task's attempts, oldest first."""
        ...

    def close(self) -> None: ...
