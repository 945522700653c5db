"""The fleet's analysis requests (migration 020): asked for by an operator, taken by one node, fenced.

A request marks a queued task `pending`. A node takes the oldest request with `FOR UPDATE SKIP
LOCKED` (two nodes never take the same one), stamping it `running` with its name and the
database's now(); that pair is the taking's fence. A node that dies while asking leaves a taking
that turns stale after `stale_s` and is taken again by whoever looks next. Ending a taking (done,
failed, or handed back to wait) names the fence, so a node that wakes up after its taking was
taken over changes nothing. No row is locked while the model answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict

from supervisor.base.pg.pool import Database
from supervisor.store.fleet_settings import PriorityWeights
from supervisor.store.tasks.analysis import TaskAnalysis, reprioritised
from supervisor.store.tasks.models import Task, TaskError, TaskState
from supervisor.store.tasks.pg_rows import TASK_COLUMNS_T, task_of
from supervisor.store.tasks.priority import PriorityBreakdown

WHY_CHARS = 500
BATCH = 10_000  # tasks asked for per transaction by `fleet analyse --queued`


class Taking(BaseModel):
    """A node's hold on one task's analysis: the task as it was taken, and the fence (node, at)."""

    model_config = ConfigDict(extra="forbid")

    task: Task
    node: str
    at: datetime


def request_analysis(db: Database, task_ids: Sequence[int] | None) -> list[int]:
    """Ask for the analysis of these queued tasks (None: every queued task never analysed); their ids.

    All or none: an unknown id, or a task that is no longer queued, is a TaskError naming it. A task
    whose analysis is being made keeps it (its new answer is on the way)."""
    if task_ids is None:
        return _request_all_queued(db)
    with db.transaction() as cursor:
        wanted = sorted(set(task_ids))
        cursor.execute("SELECT id, state FROM tasks WHERE id = ANY(%s::bigint[]) FOR UPDATE", (wanted,))
        states = {int(row["id"]): str(row["state"]) for row in cursor.fetchall()}
        unknown = [n for n in wanted if n not in states]
        if unknown:
            raise TaskError(f"no fleet task {', '.join(map(str, unknown))}; see `supervisor fleet tasks`")
        busy = [f"{n} ({states[n]})" for n in wanted if states[n] != TaskState.QUEUED.value]
        if busy:
            raise TaskError(f"only queued tasks are analysed; not queued: {', '.join(busy)} (nothing was asked for)")
        cursor.execute(
            "UPDATE tasks SET analysis_state = 'pending', analysis_node = NULL, analysis_at = now()"
            " WHERE id = ANY(%s::bigint[]) AND analysis_state IS DISTINCT FROM 'running' RETURNING id",
            (wanted,),
        )
        cursor.fetchall()
    return wanted


def _request_all_queued(db: Database) -> list[int]:
    """Every queued task never analysed, BATCH at a time, each batch its own short transaction (a
    million rows in one would hold their locks for half a minute; claims would skip them). Repeating it
    after a kill asks for the rest."""
    asked: list[int] = []
    while True:
        with db.transaction() as cursor:
            cursor.execute(
                "UPDATE tasks SET analysis_state = 'pending', analysis_node = NULL, analysis_at = now()"
                " WHERE id IN (SELECT id FROM tasks WHERE state = 'queued' AND analysis_state IS NULL"
                " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING id",
                (BATCH,),
            )
            batch = [int(row["id"]) for row in cursor.fetchall()]
        if not batch:
            return sorted(asked)
        asked += batch


_TAKE = f"""
WITH picked AS (
    SELECT id FROM tasks
    WHERE analysis_state IN ('pending', 'running')
      AND (analysis_state = 'pending' OR analysis_at < now() - make_interval(secs => %(stale)s))
    ORDER BY analysis_at, id LIMIT 1 FOR UPDATE SKIP LOCKED
)
UPDATE tasks t SET analysis_state = 'running', analysis_node = %(node)s, analysis_at = now()
FROM picked WHERE t.id = picked.id
RETURNING {TASK_COLUMNS_T}, t.analysis_at AS taken_at
"""

_FENCE = "id = %(id)s AND analysis_state = 'running' AND analysis_node = %(node)s AND analysis_at = %(at)s"


def take_analysis(db: Database, node: str, stale_s: float) -> Taking | None:
    """The oldest analysis request (or a stale taking), now held by `node`; None when there is none."""
    with db.transaction() as cursor:
        cursor.execute(_TAKE, {"node": node, "stale": float(stale_s)})
        row = cursor.fetchone()
    if row is None:
        return None
    return Taking(task=task_of(row), node=node, at=row["taken_at"])


def _fenced(taking: Taking) -> dict[str, Any]:
    return {"id": taking.task.id, "node": taking.node, "at": taking.at}


def finish_analysis(
    db: Database, taking: Taking, analysis: TaskAnalysis, weights: PriorityWeights, now: datetime
) -> PriorityBreakdown | None:
    """Record the estimate and the task's new priority; None when the taking was taken over (nothing changed)."""
    with db.transaction() as cursor:
        cursor.execute(f"SELECT priority_breakdown FROM tasks WHERE {_FENCE} FOR UPDATE", _fenced(taking))
        row = cursor.fetchone()
        if row is None:
            return None
        saved = row["priority_breakdown"]
        breakdown = reprioritised(
            None if saved is None else PriorityBreakdown.model_validate(saved), analysis, weights, now
        )
        cursor.execute(
            "UPDATE tasks SET analysis_state = 'done', analysis = %(analysis)s, factors = %(factors)s,"
            f" priority_breakdown = %(breakdown)s, priority = %(priority)s, updated_at = now() WHERE {_FENCE}",
            {
                **_fenced(taking),
                "analysis": Jsonb(analysis.model_dump(mode="json")),
                "factors": Jsonb({name: entry.value for name, entry in breakdown.factors.items()}),
                "breakdown": Jsonb(breakdown.model_dump(mode="json")),
                "priority": breakdown.priority,
            },
        )
    return breakdown


def fail_analysis(db: Database, taking: Taking, why: str) -> bool:
    """The model's answer could not be used: recorded, the priority unchanged. False when taken over."""
    with db.transaction() as cursor:
        cursor.execute(
            f"UPDATE tasks SET analysis_state = 'failed', analysis = %(why)s WHERE {_FENCE}",
            {**_fenced(taking), "why": Jsonb({"error": why[:WHY_CHARS]})},
        )
        return cursor.rowcount == 1


def hand_back(db: Database, taking: Taking) -> bool:
    """The request could not be made now (budget, route, model busy): pending again, asked later."""
    with db.transaction() as cursor:
        cursor.execute(
            f"UPDATE tasks SET analysis_state = 'pending', analysis_node = NULL, analysis_at = now() WHERE {_FENCE}",
            _fenced(taking),
        )
        return cursor.rowcount == 1


class AnalysisRecord(BaseModel):
    """What `fleet task show` says of a task's analysis."""

    model_config = ConfigDict(extra="forbid")

    state: str | None
    node: str | None
    at: datetime | None
    result: dict[str, Any] | None


def analysis_of(db: Database, task_id: int) -> AnalysisRecord:
    with db.transaction() as cursor:
        cursor.execute(
            "SELECT analysis_state, analysis_node, analysis_at, analysis FROM tasks WHERE id = %s", (task_id,)
        )
        row = cursor.fetchone()
    if row is None:
        raise TaskError(f"no fleet task {task_id}; see `supervisor fleet tasks`")
    return AnalysisRecord(
        state=row["analysis_state"], node=row["analysis_node"], at=row["analysis_at"], result=row["analysis"]
    )
