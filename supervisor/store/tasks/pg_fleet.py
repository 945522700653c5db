"""The fleet's own additions to its queue: prioritised adds under the per-language limit, projects, breakdowns.

A task's language is the one its import gave, else its project's (`config.language`, recorded by
`fleet project add`), else "unknown"; it is kept in the task's metadata. The per-language limit
counts a language's open tasks (queued, running, judging): adding tasks that would take it past
the limit is refused whole, checked inside the inserting transaction under a per-language advisory
lock, so two nodes adding at once cannot both slip under it. An import of any size is streamed
(`queue_prioritised`): read, prioritised and inserted a chunk at a time in that one transaction.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from supervisor.base.pg.pool import Cursor, Database
from supervisor.store.fleet_settings import PriorityWeights
from supervisor.store.fleet_status import open_by_language
from supervisor.store.tasks.models import NewTask, Task, TaskError
from supervisor.store.tasks.pg_queue import PostgresTaskQueue
from supervisor.store.tasks.pg_rows import TaskExtras
from supervisor.store.tasks.priority import (
    HEALTH_WINDOW,
    UNKNOWN_LANGUAGE,
    PriorityBreakdown,
    PriorityHints,
    prioritise,
)

JUDGED_SQL = "('passed', 'failed', 'gave-up', 'infrastructure')"


class FleetProject(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    source: str
    language: str = Field(description="The project's language (given, or detected from its files).")
    config: dict[str, Any] = Field(description="What `fleet project add` recorded (JSONB).")


def _lock_key(language: str) -> int:
    digest = hashlib.sha256(f"ouroboros-language:{language}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def fleet_projects(db: Database) -> list[FleetProject]:
    with db.transaction() as cursor:
        cursor.execute("SELECT name, source, config FROM projects ORDER BY name")
        rows = cursor.fetchall()
    return [
        FleetProject(
            name=row["name"],
            source=row["source"],
            language=str(row["config"].get("language") or UNKNOWN_LANGUAGE),
            config=row["config"],
        )
        for row in rows
    ]


def health_in(cursor: Cursor, projects: Sequence[str], window: int = HEALTH_WINDOW) -> dict[str, tuple[int, int]]:
    """(passed, judged) over each project's last `window` judged tasks (by when they were judged)."""
    cursor.execute(
        "SELECT project, count(*) FILTER (WHERE state = 'passed') AS passed, count(*) AS judged FROM ("
        f" SELECT project, state, row_number() OVER (PARTITION BY project ORDER BY updated_at DESC, id DESC) AS n"
        f" FROM tasks WHERE project = ANY(%s::text[]) AND state IN {JUDGED_SQL}) recent"
        " WHERE n <= %s GROUP BY project",
        (list(projects), window),
    )
    found = {row["project"]: (int(row["passed"]), int(row["judged"])) for row in cursor.fetchall()}
    return {name: found.get(name, (0, 0)) for name in projects}


def language_counts(db: Database) -> dict[str, int]:
    """Open tasks (queued, running, judging) per language."""
    with db.transaction() as cursor:
        return open_by_language(cursor)


def _within_language_limit(cursor: Cursor, added: Counter[str], limit: int) -> None:
    """After this add's inserts, in its transaction: refuse it when a language is now over the limit.

    Each language's advisory lock is taken (in one order, so two adds never wait for each other's
    locks) and held to the commit: an add that commits first is counted here, one that has not
    waits for these locks, then counts these tasks."""
    for language in sorted(added):
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(language),))
    have = open_by_language(cursor)  # this add's own tasks among them
    over = [(lang, have.get(lang, 0) - n, n) for lang, n in sorted(added.items()) if have.get(lang, 0) > limit]
    if over:
        said = "; ".join(f"{lang}: {open_} open + {n} new > {limit}" for lang, open_, n in over)
        raise TaskError(
            f"the fleet's per-language task limit ([fleet.budgets] language_tasks = {limit}) would be passed "
            f"({said}); wait for tasks to finish, cancel some, or raise the limit (nothing was queued)"
        )


def _row_of(
    task: NewTask, hints: PriorityHints, breakdown: PriorityBreakdown, known: FleetProject | None
) -> tuple[NewTask, TaskExtras, str]:
    """The task with its priority, the extras it is saved with, and its language."""
    language = hints.language or (known.language if known else UNKNOWN_LANGUAGE)
    metadata: dict[str, Any] = {"language": language, "labels": hints.labels}
    if hints.created_at is not None:
        metadata["issue_created_at"] = hints.created_at.isoformat()
    extras = TaskExtras(
        factors={name: entry.value for name, entry in breakdown.factors.items()},
        breakdown=breakdown.model_dump(mode="json"),
        metadata=metadata,
    )
    return task.model_copy(update={"priority": breakdown.priority}), extras, language


Chunks = Callable[[Cursor], Iterable[Sequence[tuple[NewTask, PriorityHints]]]]


def queue_prioritised(
    queue: PostgresTaskQueue,
    produce: Chunks,
    weights: PriorityWeights,
    language_limit: int,
    now: datetime,
    *,
    breakdowns: list[PriorityBreakdown] | None = None,
) -> list[int]:
    """Queue every task `produce(cursor)` yields, all or none, each with its computed priority and
    breakdown, within the per-language limit: their ids, in order. The chunks are prioritised and
    inserted as they come (`PostgresTaskQueue.add_chunks`: whatever `produce` raises queues none), so
    a large import holds one chunk at a time. `breakdowns`, when given, gets each task's breakdown."""
    projects = {p.name: p for p in fleet_projects(queue.db)}
    health: dict[str, tuple[int, int]] = {}
    languages: Counter[str] = Counter()

    def rows(cursor: Cursor) -> Iterator[list[tuple[NewTask, TaskExtras]]]:
        for chunk in produce(cursor):
            unseen = sorted({task.project for task, _ in chunk} - health.keys())
            if unseen:  # judged tasks only: this add's own queued ones never change it
                health.update(health_in(cursor, unseen))
            out = []
            for task, hints in chunk:
                breakdown = prioritise(task, hints, weights, health[task.project], now)
                new, extras, language = _row_of(task, hints, breakdown, projects.get(task.project))
                languages[language] += 1
                out.append((new, extras))
                if breakdowns is not None:
                    breakdowns.append(breakdown)
            yield out

    return queue.add_chunks(rows, check=lambda cursor: _within_language_limit(cursor, languages, language_limit))


def add_prioritised(
    queue: PostgresTaskQueue,
    items: Sequence[tuple[NewTask, PriorityHints]],
    weights: PriorityWeights,
    language_limit: int,
    now: datetime,
) -> list[tuple[Task, PriorityBreakdown]]:
    """Queue all of `items` or none, each with its computed priority and breakdown, within the language limit
    (a small add that shows what it queued; an import streams through `queue_prioritised`)."""
    breakdowns: list[PriorityBreakdown] = []
    ids = queue_prioritised(queue, lambda _cursor: [items], weights, language_limit, now, breakdowns=breakdowns)
    return list(zip(queue.get_many(ids), breakdowns, strict=True))


def breakdowns_of(db: Database, task_ids: Sequence[int]) -> dict[int, tuple[PriorityBreakdown | None, dict[str, Any]]]:
    """Each task's saved breakdown (None: queued without one, e.g. by the queue's own add) and metadata."""
    with db.transaction() as cursor:
        cursor.execute(
            "SELECT id, priority_breakdown, metadata FROM tasks WHERE id = ANY(%s::bigint[])", (list(task_ids),)
        )
        rows = cursor.fetchall()
    return {
        int(row["id"]): (
            None if row["priority_breakdown"] is None else PriorityBreakdown.model_validate(row["priority_breakdown"]),
            dict(row["metadata"] or {}),
        )
        for row in rows
    }


def breakdown_of(db: Database, task_id: int) -> tuple[PriorityBreakdown | None, dict[str, Any]]:
    found = breakdowns_of(db, [task_id]).get(task_id)
    if found is None:
        raise TaskError(f"no task {task_id} in the fleet; `supervisor fleet tasks` lists them")
    return found


def queued_in(cursor: Cursor, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Which (project, external_id) pairs the fleet already has, with their task ids."""
    if not keys:
        return {}
    cursor.execute(
        "SELECT t.id, t.project, t.external_id FROM tasks t"
        " JOIN unnest(%s::text[], %s::text[]) AS k(project, external_id) USING (project, external_id)",
        ([key[0] for key in keys], [key[1] for key in keys]),
    )
    return {(row["project"], row["external_id"]): int(row["id"]) for row in cursor.fetchall()}
