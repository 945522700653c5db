"""How rows of the fleet's task tables (migration 001) become task records and back."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from psycopg.types.json import Jsonb

from supervisor.store.tasks.models import Attempt, Claim, NewTask, Task, TaskError, TaskState, TaskVerdict

TASK_COLUMNS = (
    "id, project, title, body, base_commit, fail_to_pass, pass_to_pass, test_patch, priority, external_id, source,"
    " state, created_at, updated_at, attempts, fence, worker, lease_expires_at, result_commit, result_branch,"
    " summary, verdict, note"
)
# The same, qualified with `t.` for statements that join the table with itself.
TASK_COLUMNS_T = ", ".join(f"t.{name.strip()}" for name in TASK_COLUMNS.split(","))
ATTEMPT_COLUMNS = (
    "task_id, number, fence, worker, started_at, ended_at, ended_as, reason, result_commit, tokens, refused_late"
)
NEW_COLUMNS = "project, title, body, base_commit, fail_to_pass, pass_to_pass, test_patch, priority, external_id, source"
HELD_SQL = "('running', 'judging')"


def new_values(new: NewTask) -> tuple[Any, ...]:
    """The values of NEW_COLUMNS for one new task (lists as JSONB)."""
    return (
        new.project,
        new.title,
        new.body,
        new.base_commit,
        Jsonb(new.fail_to_pass),
        None if new.pass_to_pass is None else Jsonb(new.pass_to_pass),
        new.test_patch,
        new.priority,
        new.external_id,
        new.source,
    )


@dataclass(frozen=True)
class TaskExtras:
    """What a fleet task holds beyond NewTask: its priority factors, their breakdown, an import's metadata."""

    factors: dict[str, Any] | None = None
    breakdown: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def values(self) -> tuple[Any, ...]:
        """The values of the columns factors, priority_breakdown, metadata."""
        return (
            None if self.factors is None else Jsonb(self.factors),
            None if self.breakdown is None else Jsonb(self.breakdown),
            Jsonb(self.metadata),
        )


def verdict_value(verdict: TaskVerdict) -> Jsonb:
    return Jsonb(verdict.model_dump(mode="json"))


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC)


def _aware(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def task_of(row: dict[str, Any]) -> Task:
    data = {key: row[key] for key in TASK_COLUMNS.replace(" ", "").split(",")}
    data["state"] = TaskState(data["state"])
    data["verdict"] = None if data["verdict"] is None else TaskVerdict.model_validate(data["verdict"])
    for key in ("created_at", "updated_at", "lease_expires_at"):
        data[key] = _utc(data[key])
    return Task.model_validate(data)


def attempt_of(row: dict[str, Any]) -> Attempt:
    data = dict(row)
    data["ended_as"] = None if data["ended_as"] is None else TaskState(data["ended_as"])
    data["started_at"] = _utc(data["started_at"])
    data["ended_at"] = _utc(data["ended_at"])
    return Attempt.model_validate(data)


def claim_of(row: dict[str, Any]) -> Claim:
    if row["worker"] is None or row["lease_expires_at"] is None:
        raise TaskError(f"task {row['id']} is {row['state']} but names no holder; the fleet database is damaged")
    return Claim(
        task_id=row["id"],
        attempt=row["attempts"],
        fence=row["fence"],
        worker=row["worker"],
        lease_expires_at=_aware(row["lease_expires_at"]),
    )
