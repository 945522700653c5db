"""The fleet's own additions to its queue: prioritised adds under the per-language limit, projects, breakdowns.

A task's language is the one its import gave, else its project's (`config.language`, recorded by
`fleet project add`), else "unknown"; it is kept in the task's metadata. The per-language limit
counts a language's open tasks (queued, running, judging): adding tasks that would take it past
the limit is refused whole, checked inside the inserting transaction under a per-language advisory
lock, so two nodes adding at once cannot both slip under it.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
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


def project_health(db: Database, projects: Sequence[str], window: int = HEALTH_WINDOW) -> dict[str, tuple[int, int]]:
    """(passed, judged) over each project's last `window` judged tasks (by when they were judged)."""
    with db.transaction() as cursor:
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


def _language_guard(languages: list[str], limit: int) -> Any:
    wanted = Counter(languages)

    def guard(cursor: Cursor, _batch: list[NewTask]) -> None:
        for language in sorted(wanted):  # in one order, so two adds never wait for each other's locks
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(language),))
        have = open_by_language(cursor)
        over = [(lang, have.get(lang, 0), n) for lang, n in sorted(wanted.items()) if have.get(lang, 0) + n > limit]
        if over:
            said = "; ".join(f"{lang}: {open_} open + {n} new > {limit}" for lang, open_, n in over)
            raise TaskError(
                f"the fleet's per-language task limit ([fleet.budgets] language_tasks = {limit}) would be passed "
                f"({said}); wait for tasks to finish, cancel some, or raise the limit (nothing was queued)"
            )

    return guard


def add_prioritised(
    queue: PostgresTaskQueue,
    items: Sequence[tuple[NewTask, PriorityHints]],
    weights: PriorityWeights,
    language_limit: int,
    now: datetime,
) -> list[tuple[Task, PriorityBreakdown]]:
    """Queue all of `items` or none, each with its computed priority and breakdown, within the language limit."""
    projects = {p.name: p for p in fleet_projects(queue.db)}
    health = project_health(queue.db, sorted({task.project for task, _ in items}))
    news, extras, breakdowns, languages = [], [], [], []
    for task, hints in items:
        breakdown = prioritise(task, hints, weights, health.get(task.project, (0, 0)), now)
        known = projects.get(task.project)
        language = hints.language or (known.language if known else UNKNOWN_LANGUAGE)
        metadata: dict[str, Any] = {"language": language, "labels": hints.labels}
        if hints.created_at is not None:
            metadata["issue_created_at"] = hints.created_at.isoformat()
        news.append(task.model_copy(update={"priority": breakdown.priority}))
        extras.append(
            TaskExtras(
                factors={name: entry.value for name, entry in breakdown.factors.items()},
                breakdown=breakdown.model_dump(mode="json"),
                metadata=metadata,
            )
        )
        breakdowns.append(breakdown)
        languages.append(language)
    tasks = queue.add_many(news, extras=extras, guard=_language_guard(languages, language_limit))
    return list(zip(tasks, breakdowns, strict=True))


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


def queued_external_ids(db: Database, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Which (project, external_id) pairs the fleet already has, with their task ids."""
    if not keys:
        return {}
    with db.transaction() as cursor:
        cursor.execute(
            "SELECT t.id, t.project, t.external_id FROM tasks t"
            " JOIN unnest(%s::text[], %s::text[]) AS k(project, external_id) USING (project, external_id)",
            ([key[0] for key in keys], [key[1] for key in keys]),
        )
        return {(row["project"], row["external_id"]): int(row["id"]) for row in cursor.fetchall()}
