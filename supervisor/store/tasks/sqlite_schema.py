"""The embedded queue's tables, its schema version, and how rows become task records and back.

One file, HOME/tasks.sqlite3, with two tables: `tasks` (one row per task; lists and the verdict
as JSON text) and `attempts` (one row per claim). `PRAGMA user_version` holds the schema version;
a file written by a newer release is refused with a clear error instead of being misread.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from supervisor.store.tasks.models import Attempt, Claim, NewTask, Task, TaskError, TaskState, TaskVerdict

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    base_commit TEXT NOT NULL,
    fail_to_pass TEXT NOT NULL,
    pass_to_pass TEXT,
    test_patch TEXT NOT NULL,
    priority INTEGER NOT NULL,
    external_id TEXT,
    source TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    fence INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    lease_expires_at TEXT,
    result_commit TEXT,
    result_branch TEXT,
    summary TEXT,
    verdict TEXT,
    note TEXT
);
-- The claim query (queued, highest priority, then oldest): its prefix serves every state lookup.
CREATE INDEX IF NOT EXISTS tasks_claim ON tasks (state, priority DESC, id);
CREATE INDEX IF NOT EXISTS tasks_project ON tasks (project, id);
CREATE UNIQUE INDEX IF NOT EXISTS tasks_external ON tasks (project, external_id) WHERE external_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS attempts (
    task_id INTEGER NOT NULL REFERENCES tasks (id),
    number INTEGER NOT NULL,
    fence INTEGER NOT NULL,
    worker TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    ended_as TEXT,
    reason TEXT,
    result_commit TEXT,
    tokens INTEGER NOT NULL DEFAULT 0,
    verdict TEXT,
    refused_late INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (task_id, number)
);
"""

TASK_FIELDS = "project, title, body, base_commit, fail_to_pass, pass_to_pass, test_patch, priority, external_id, source"


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Create the tables of a new file; refuse a file from a newer release. Call inside BEGIN IMMEDIATE."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise TaskError(
            f"{path} holds a task queue of schema {version}, written by a newer release (this one knows up "
            f"to {SCHEMA_VERSION}); run that release or a newer one, not this one, on this instance"
        )
    if version < SCHEMA_VERSION:
        for statement in SCHEMA.split(";"):  # not executescript: it would commit the open transaction
            if statement.strip():
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def stamp(moment: datetime) -> str:
    """A UTC timestamp as stored: fixed width, so text order is time order."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def moment(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text).astimezone(UTC)


def task_values(new: NewTask) -> tuple[Any, ...]:
    """The values of TASK_FIELDS for one new task."""
    return (
        new.project,
        new.title,
        new.body,
        new.base_commit,
        json.dumps(new.fail_to_pass),
        None if new.pass_to_pass is None else json.dumps(new.pass_to_pass),
        new.test_patch,
        new.priority,
        new.external_id,
        new.source,
    )


def task_of(row: sqlite3.Row) -> Task:
    data = dict(row)
    data["fail_to_pass"] = json.loads(data["fail_to_pass"])
    data["pass_to_pass"] = None if data["pass_to_pass"] is None else json.loads(data["pass_to_pass"])
    data["verdict"] = None if data["verdict"] is None else TaskVerdict.model_validate_json(data["verdict"])
    data["state"] = TaskState(data["state"])
    for key in ("created_at", "updated_at", "lease_expires_at"):
        data[key] = moment(data[key])
    return Task.model_validate(data)


def attempt_of(row: sqlite3.Row) -> Attempt:
    data = dict(row)
    data.pop("verdict")
    data["refused_late"] = bool(data["refused_late"])
    data["ended_as"] = None if data["ended_as"] is None else TaskState(data["ended_as"])
    data["started_at"] = moment(data["started_at"])
    data["ended_at"] = moment(data["ended_at"])
    return Attempt.model_validate(data)


def unhold(db: sqlite3.Connection, task_id: int, state: TaskState, note: str, now: str) -> None:
    """The task in `state` with no holder and no result of an attempt that ended unjudged."""
    db.execute(
        "UPDATE tasks SET state = ?, note = ?, worker = NULL, lease_expires_at = NULL, result_commit = NULL,"
        " result_branch = NULL, summary = NULL, verdict = NULL, updated_at = ? WHERE id = ?",
        (state.value, note, now, task_id),
    )


def end_attempt(
    db: sqlite3.Connection,
    claim: Claim,
    state: TaskState,
    reason: str,
    now: str,
    result: str | None,
    tokens: int = 0,
    verdict: str | None = None,
) -> None:
    db.execute(
        "UPDATE attempts SET ended_at = ?, ended_as = ?, reason = ?, result_commit = ?, tokens = ?, verdict = ?"
        " WHERE task_id = ? AND number = ?",
        (now, state.value, reason, result, tokens, verdict, claim.task_id, claim.attempt),
    )


def claim_of(task: Task) -> Claim:
    if task.worker is None or task.lease_expires_at is None:
        raise TaskError(f"task {task.id} is {task.state} but names no holder; the queue file is damaged")
    return Claim(
        task_id=task.id,
        attempt=task.attempts,
        fence=task.fence,
        worker=task.worker,
        lease_expires_at=task.lease_expires_at,
    )


def encodable(new: NewTask) -> None:
    """Text SQLite can store: a lone surrogate (from a JSON escape) is refused here, not half-way in."""
    try:
        new.model_dump_json()
        for text in (new.title, new.body, new.test_patch, new.external_id or "", new.source):
            text.encode("utf-8")
    except (UnicodeEncodeError, ValueError) as exc:
        raise TaskError(f"task {new.title!r} holds text that is not valid Unicode ({exc}); fix it") from exc


def named(key: tuple[str, str]) -> str:
    return f"instance {key[1]!r} of project {key[0]!r}"
