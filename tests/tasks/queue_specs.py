"""How the contract tests open a queue: a picklable spec per implementation, so a child process
(or a thread) opens its own handle on the same queue. The fleet's PostgreSQL queue adds a kind here."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.store.tasks.models import NewTask
from supervisor.store.tasks.queue import TaskQueue
from supervisor.store.tasks.sqlite_queue import SqliteTaskQueue

BASE = "a" * 40


PROJECTS = ("demo", "alpha", "beta", "other", "gamma")  # the projects the contract tests name (the fleet knows them)


@dataclass(frozen=True)
class QueueSpec:
    kind: str
    location: str  # sqlite: the file; postgres: the database URL
    password: str | None = None

    def open(self) -> TaskQueue:
        if self.kind == "sqlite":
            return SqliteTaskQueue(Path(self.location))
        if self.kind == "postgres":
            from supervisor.base.pg.pool import Database
            from supervisor.store.tasks.pg_queue import PostgresTaskQueue

            db = Database(self.location, password=self.password, application_name="tests", min_size=1, max_size=4)
            return PostgresTaskQueue(db.open(), owns_database=True)
        raise ValueError(f"no queue kind {self.kind!r}")


def new_task(
    title: str = "fix it", *, project: str = "demo", priority: int = 0, external_id: str | None = None
) -> NewTask:
    return NewTask(project=project, title=title, base_commit=BASE, priority=priority, external_id=external_id)


def claim_all(spec: QueueSpec, worker: str) -> list[int]:
    """Claim until the queue is empty, through a handle of this process's own; the ids claimed."""
    queue = spec.open()
    try:
        taken = []
        while (claim := queue.claim(worker, 60)) is not None:
            taken.append(claim.task_id)
        return taken
    finally:
        queue.close()


def claim_all_together(spec: QueueSpec, worker: str, start: Any, results: Any) -> None:
    """`claim_all` in a child process, started with the others at one barrier; the ids go to `results`."""
    queue = spec.open()  # opened before the barrier, so every child is ready when they start
    try:
        start.wait()
        taken = []
        while (claim := queue.claim(worker, 60)) is not None:
            taken.append(claim.task_id)
            time.sleep(0.002)  # let the others run too: on a busy machine one child could take all before they start
        results.put((worker, taken))
    finally:
        queue.close()
