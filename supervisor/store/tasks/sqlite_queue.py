"""The embedded task queue: the TaskQueue contract (queue.py) on one SQLite file in HOME.

Every write is one `BEGIN IMMEDIATE` transaction, so two processes (or threads) that claim at
once are serialised by SQLite's write lock and never get the same task; a kill at any point
leaves the file as it was before or after one whole call (WAL, `synchronous=FULL`). The file is
the supervisor's own: it is never mounted into a container.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from supervisor.store.tasks.models import (
    HELD,
    Attempt,
    Claim,
    NewTask,
    Task,
    TaskError,
    TaskState,
    TaskVerdict,
    check_task,
)
from supervisor.store.tasks.sqlite_schema import (
    TASK_FIELDS,
    attempt_of,
    claim_of,
    encodable,
    end_attempt,
    migrate,
    named,
    stamp,
    task_of,
    task_values,
    unhold,
)

BUSY_TIMEOUT_MS = 30_000


def _now() -> datetime:
    return datetime.now(UTC)


class SqliteTaskQueue:
    """The queue in one SQLite file; safe to share between threads, and between processes by path."""

    def __init__(self, path: Path, *, clock: Callable[[], datetime] = _now) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.RLock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise TaskError(f"cannot open the task queue {path}: {exc}; check the file and its folder") from exc
        db.row_factory = sqlite3.Row
        self._db = db
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA foreign_keys = ON")
            with self._write() as tx:
                migrate(tx, path)
        except sqlite3.DatabaseError as exc:
            db.close()
            raise TaskError(
                f"{path} is not a readable task queue ({exc}); move it aside and run the command again "
                "(a new, empty queue is made)"
            ) from exc
        except BaseException:
            db.close()
            raise

    # -- transactions -----------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken before anything is read (so nothing read goes stale)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def _row(self, db: sqlite3.Connection, task_id: int) -> sqlite3.Row:
        row = db.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
        if row is None:
            raise TaskError(f"no task {task_id}; `supervisor task list` shows the tasks there are")
        return row  # type: ignore[no-any-return]

    # -- adding -----------------------------------------------------------------------------

    def add(self, new: NewTask) -> Task:
        return self.add_many([new])[0]

    def add_many(self, news: Iterable[NewTask]) -> list[Task]:
        batch = [NewTask.model_validate(new.model_dump()) for new in news]
        for new in batch:
            encodable(new)
        seen: set[tuple[str, str]] = set()
        for new in batch:
            if new.external_id is not None:
                key = (new.project, new.external_id)
                if key in seen:
                    raise TaskError(f"{named(key)} is given twice; give each once (nothing was queued)")
                seen.add(key)
        now = stamp(self._clock())
        with self._write() as db:
            ids = []
            for new in batch:
                if new.external_id is not None:
                    self._refuse_duplicate(db, new.project, new.external_id)
                cursor = db.execute(
                    f"INSERT INTO tasks ({TASK_FIELDS}, state, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*task_values(new), TaskState.QUEUED.value, now, now),
                )
                ids.append(int(cursor.lastrowid or 0))
            return [task_of(self._row(db, task_id)) for task_id in ids]

    def _refuse_duplicate(self, db: sqlite3.Connection, project: str, external_id: str) -> None:
        row = db.execute(
            "SELECT id FROM tasks WHERE project = ? AND external_id = ?", (project, external_id)
        ).fetchone()
        if row is not None:
            raise TaskError(
                f"{named((project, external_id))} is already task {row['id']}; leave it out, or retry task "
                f"{row['id']} (nothing was queued)"
            )

    # -- reading ----------------------------------------------------------------------------

    def get(self, task_id: int) -> Task:
        with self._lock:
            return task_of(self._row(self._db, task_id))

    def find(
        self, *, states: Iterable[TaskState] | None = None, project: str | None = None, limit: int | None = None
    ) -> list[Task]:
        where: list[str] = ["1 = 1"]
        args: list[str] = []
        if states is not None:
            wanted = [TaskState(state).value for state in states]
            where.append(f"state IN ({', '.join('?' * len(wanted))})")
            args += wanted
        if project is not None:
            where.append("project = ?")
            args.append(project)
        if limit is not None and limit < 0:
            raise TaskError(f"a limit of {limit} tasks makes no sense; give 0 or more")
        query = f"SELECT * FROM tasks WHERE {' AND '.join(where)} ORDER BY id LIMIT ?"
        with self._lock:
            rows = self._db.execute(query, (*args, -1 if limit is None else limit)).fetchall()
        return [task_of(row) for row in rows]

    def counts(self) -> dict[TaskState, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) AS n FROM tasks GROUP BY state").fetchall()
        found = {TaskState(row["state"]): int(row["n"]) for row in rows}
        return {state: found.get(state, 0) for state in TaskState}

    def attempts(self, task_id: int) -> list[Attempt]:
        with self._lock:
            self._row(self._db, task_id)
            rows = self._db.execute("SELECT * FROM attempts WHERE task_id = ? ORDER BY number", (task_id,))
            return [attempt_of(row) for row in rows.fetchall()]

    def held_by(self, worker: str) -> list[tuple[Task, Claim]]:
        held = [state.value for state in HELD]
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM tasks WHERE worker = ? AND state IN (?, ?) ORDER BY id", (worker, *held)
            ).fetchall()
        tasks = [task_of(row) for row in rows]
        return [(task, claim_of(task)) for task in tasks]

    # -- one attempt ------------------------------------------------------------------------

    def claim(self, worker: str, lease_s: float, *, projects: Iterable[str] | None = None) -> Claim | None:
        if not worker:
            raise TaskError("a claim needs a worker name")
        if not lease_s > 0:
            raise TaskError(f"a lease of {lease_s} s runs out at once; give a positive number of seconds")
        head = _head_query(projects)
        if head is None:
            return None
        with self._write() as db:
            row = db.execute(*head).fetchone()
            if row is None:
                return None
            check_task(TaskState(row["state"]), TaskState.RUNNING)
            now = self._clock()
            lease, fence, number = stamp(now + timedelta(seconds=lease_s)), row["fence"] + 1, row["attempts"] + 1
            db.execute(
                "UPDATE tasks SET state = ?, fence = ?, attempts = ?, worker = ?, lease_expires_at = ?,"
                " updated_at = ?, note = NULL WHERE id = ?",
                (TaskState.RUNNING.value, fence, number, worker, lease, stamp(now), row["id"]),
            )
            db.execute(
                "INSERT INTO attempts (task_id, number, fence, worker, started_at) VALUES (?, ?, ?, ?, ?)",
                (row["id"], number, fence, worker, stamp(now)),
            )
            return claim_of(task_of(self._row(db, row["id"])))

    def peek(self, *, projects: Iterable[str] | None = None) -> Task | None:
        head = _head_query(projects)
        if head is None:
            return None
        with self._lock:
            row = self._db.execute(*head).fetchone()
        return None if row is None else task_of(row)

    def _holds(self, db: sqlite3.Connection, claim: Claim, *, lease: bool = False) -> sqlite3.Row | None:
        """The task row if `claim` still holds it; else None, with the attempt marked refused_late."""
        row = db.execute("SELECT * FROM tasks WHERE id = ?", (claim.task_id,)).fetchone()
        held = row is not None and TaskState(row["state"]) in HELD and row["fence"] == claim.fence
        if held and lease:
            held = self._clock() < datetime.fromisoformat(row["lease_expires_at"])
        if held:
            return row  # type: ignore[no-any-return]
        db.execute(
            "UPDATE attempts SET refused_late = 1 WHERE task_id = ? AND number = ? AND fence = ?",
            (claim.task_id, claim.attempt, claim.fence),
        )
        return None

    def renew(self, claim: Claim, lease_s: float) -> Claim | None:
        if not lease_s > 0:
            raise TaskError(f"a lease of {lease_s} s runs out at once; give a positive number of seconds")
        with self._write() as db:
            row = self._holds(db, claim, lease=True)
            if row is None:
                return None
            now = self._clock()
            lease = now + timedelta(seconds=lease_s)
            db.execute(
                "UPDATE tasks SET lease_expires_at = ?, updated_at = ? WHERE id = ?",
                (stamp(lease), stamp(now), claim.task_id),
            )
            return claim.model_copy(update={"lease_expires_at": datetime.fromisoformat(stamp(lease))})

    def mark_judging(self, claim: Claim, result_commit: str, result_branch: str, summary: str) -> bool:
        with self._write() as db:
            row = self._holds(db, claim)
            if row is None:
                return False
            check_task(TaskState(row["state"]), TaskState.JUDGING)
            now = stamp(self._clock())
            db.execute(
                "UPDATE tasks SET state = ?, result_commit = ?, result_branch = ?, summary = ?, updated_at = ?"
                " WHERE id = ?",
                (TaskState.JUDGING.value, result_commit, result_branch, summary, now, claim.task_id),
            )
            db.execute(
                "UPDATE attempts SET result_commit = ? WHERE task_id = ? AND number = ?",
                (result_commit, claim.task_id, claim.attempt),
            )
            return True

    def finish(self, claim: Claim, verdict: TaskVerdict) -> bool:
        with self._write() as db:
            row = self._holds(db, claim)
            if row is None:
                return False
            check_task(TaskState(row["state"]), verdict.state)
            now = stamp(self._clock())
            result = verdict.result_commit or row["result_commit"]
            text = verdict.model_dump_json()
            db.execute(
                "UPDATE tasks SET state = ?, verdict = ?, result_commit = ?, worker = NULL,"
                " lease_expires_at = NULL, updated_at = ? WHERE id = ?",
                (verdict.state.value, text, result, now, claim.task_id),
            )
            end_attempt(db, claim, verdict.state, verdict.reason, now, result, verdict.tokens, text)
            return True

    def release(self, claim: Claim, reason: str) -> bool:
        with self._write() as db:
            row = self._holds(db, claim)
            if row is None:
                return False
            check_task(TaskState(row["state"]), TaskState.QUEUED)
            now = stamp(self._clock())
            unhold(db, claim.task_id, TaskState.QUEUED, reason, now)
            end_attempt(db, claim, TaskState.QUEUED, reason, now, row["result_commit"])
            return True

    # -- the operator -----------------------------------------------------------------------

    def cancel(self, task_id: int, reason: str) -> Task:
        with self._write() as db:
            row = self._row(db, task_id)
            before = TaskState(row["state"])
            if before not in (TaskState.QUEUED, *HELD):
                raise TaskError(f"task {task_id} is {before} already; only a queued or running task can be cancelled")
            check_task(before, TaskState.CANCELLED)
            now = stamp(self._clock())
            unhold(db, task_id, TaskState.CANCELLED, reason, now)
            if before in HELD:
                claim = claim_of(task_of(row))
                end_attempt(db, claim, TaskState.CANCELLED, reason, now, row["result_commit"])
            return task_of(self._row(db, task_id))

    def retry(self, task_id: int) -> Task:
        with self._write() as db:
            row = self._row(db, task_id)
            before = TaskState(row["state"])
            if before in (TaskState.QUEUED, *HELD):
                raise TaskError(f"task {task_id} is {before}; only a finished or cancelled task can be retried")
            check_task(before, TaskState.QUEUED)
            unhold(db, task_id, TaskState.QUEUED, f"retried after {before}", stamp(self._clock()))
            return task_of(self._row(db, task_id))

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _head_query(projects: Iterable[str] | None) -> tuple[str, list[str]] | None:
    """The query of the queued task a claim takes next (None: an empty list of projects, so none)."""
    only = None if projects is None else sorted(set(projects))
    if only == []:
        return None
    where, args = "state = ?", [TaskState.QUEUED.value]
    if only is not None:
        where += f" AND project IN ({', '.join('?' * len(only))})"
        args += only
    return f"SELECT * FROM tasks WHERE {where} ORDER BY priority DESC, id LIMIT 1", args


def open_queue(path: Path) -> SqliteTaskQueue:
    """The instance's queue (Instance.tasks_db), made empty if the file does not exist yet."""
    return SqliteTaskQueue(path)
