"""The fleet's task queue: the TaskQueue contract (queue.py) on PostgreSQL, shared by every node.

Every method is one short transaction on a pooled connection; nothing is held while a task's work
runs. A claim is one statement: it picks the claimable task of highest priority (then oldest) with
`FOR UPDATE SKIP LOCKED`, so concurrent claimers never wait for each other nor take one task twice,
and issues a lease in the database's clock (now(); a node's clock is never used) with a fence one
larger than before. Claimable: queued, or held with a lease that has run out (its node died or
stalled): the fence then grows, the old attempt is ended, and every later write with the old fence
is refused. The statement takes the best candidate of each kind (the queued one from the claim
index, an expired one from the lease index) and claims the better; the other candidate's row lock
ends with the statement's transaction, a moment later. Every write that takes a Claim names `fence = %s AND state IN (...)` in its WHERE; a
write that finds no such row changes nothing but its attempt's `refused_late` mark.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from supervisor.base.pg.migrate import check_schema
from supervisor.base.pg.pool import Cursor, Database, Row
from supervisor.store.projects import NAME_PATTERN
from supervisor.store.tasks.models import (
    ALLOWED,
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
from supervisor.store.tasks.pg_insert import CHUNK, ChunkWriter, chunked
from supervisor.store.tasks.pg_rows import (
    ATTEMPT_COLUMNS,
    HELD_SQL,
    TASK_COLUMNS,
    TASK_COLUMNS_T,
    TaskExtras,
    attempt_of,
    claim_of,
    task_of,
    verdict_value,
)

_CLAIM = """
WITH queued AS (
    SELECT id, state, attempts, priority FROM tasks WHERE state = 'queued' {only}
    ORDER BY state, priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED
), expired AS (
    SELECT id, state, attempts, priority FROM tasks
    WHERE state IN ('running', 'judging') AND lease_expires_at < now() {only}
    ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED
), picked AS (
    SELECT id, state AS was, attempts AS was_attempt
    FROM (SELECT * FROM queued UNION ALL SELECT * FROM expired) claimable
    ORDER BY priority DESC, id LIMIT 1
), claimed AS (
    UPDATE tasks t SET state = 'running', fence = t.fence + 1, attempts = t.attempts + 1, worker = %(worker)s,
        lease_expires_at = now() + make_interval(secs => %(lease)s), updated_at = now(), note = NULL,
        result_commit = NULL, result_branch = NULL, summary = NULL, verdict = NULL
    FROM picked WHERE t.id = picked.id
    RETURNING t.id, t.state, t.attempts, t.fence, t.worker, t.lease_expires_at, picked.was, picked.was_attempt
), ended AS (
    UPDATE attempts a SET ended_at = now(), ended_as = 'queued', reason = %(reason)s
    FROM claimed c WHERE a.task_id = c.id AND a.number = c.was_attempt AND c.was <> 'queued'
), started AS (
    INSERT INTO attempts (task_id, number, fence, worker, started_at)
    SELECT id, attempts, fence, worker, now() FROM claimed
)
SELECT * FROM claimed
"""


def _claim_moves_allowed() -> None:
    """The claim statement moves a task queued -> running, and a held one whose lease ran out back
    through queued (its attempt ends as a release would): the state table must allow both. Checked
    once, at import, since the statement commits by itself."""
    for held in HELD:
        check_task(held, TaskState.QUEUED)
    check_task(TaskState.QUEUED, TaskState.RUNNING)


_claim_moves_allowed()

# What `claim` would take now, without taking it (no lock: another node may claim it first).
_PEEK = f"""
SELECT {TASK_COLUMNS} FROM tasks
WHERE (state = 'queued' OR (state IN ('running', 'judging') AND lease_expires_at < now())) {{only}}
ORDER BY priority DESC, id LIMIT 1
"""

_FENCED = f"""
UPDATE tasks t SET {{changes}}, updated_at = now()
FROM (SELECT id, result_commit AS was_result FROM tasks WHERE id = %(id)s FOR UPDATE) old
WHERE t.id = old.id AND t.fence = %(fence)s AND t.state = ANY(%(froms)s::text[]) {{lease}}
RETURNING {TASK_COLUMNS_T}, old.was_result
"""

_UNHOLD = (
    "state = %(state)s, note = %(note)s, worker = NULL, lease_expires_at = NULL, result_commit = NULL,"
    " result_branch = NULL, summary = NULL, verdict = NULL"
)


def _positive(lease_s: float) -> None:
    if not lease_s > 0:
        raise TaskError(f"a lease of {lease_s} s runs out at once; give a positive number of seconds")


class PostgresTaskQueue:
    """The queue in the fleet's database; safe to share between threads (the pool lends connections)."""

    def __init__(self, database: Database, *, owns_database: bool = False, check: bool = True) -> None:
        self.db = database
        self._owns = owns_database
        if check:
            check_schema(database)

    # -- projects ---------------------------------------------------------------------------

    def add_project(self, name: str, source: str, config: dict[str, Any] | None = None) -> None:
        """Make `name` known to the fleet (tasks may name it), or update its source and config."""
        import re

        if not re.match(NAME_PATTERN, name):
            raise TaskError(f"{name!r} is not a project name (lowercase letters, digits, . _ -)")
        with self.db.transaction() as cursor:
            cursor.execute(
                "INSERT INTO projects (name, source, config) VALUES (%s, %s, %s) ON CONFLICT (name) DO UPDATE"
                " SET source = EXCLUDED.source, config = EXCLUDED.config, updated_at = now()",
                (name, source, Jsonb(config or {})),
            )

    # -- adding -----------------------------------------------------------------------------

    def add(self, new: NewTask) -> Task:
        return self.add_many([new])[0]

    def add_many(self, news: Iterable[NewTask]) -> list[Task]:
        """The contract's add_many: all or none, in one transaction, CHUNK rows per statement."""
        ids = self.add_chunks(lambda _cursor: chunked(((new, TaskExtras()) for new in news), CHUNK))
        return self.get_many(ids)

    def add_chunks(
        self,
        produce: Callable[[Cursor], Iterable[Sequence[tuple[NewTask, TaskExtras]]]],
        *,
        check: Callable[[Cursor], None] | None = None,
    ) -> list[int]:
        """Queue every task `produce(cursor)` yields, all or none, in one transaction: their ids, in order.

        The chunks are read one at a time and inserted as they come (CHUNK rows per statement, only
        ids sent back), so a large add is never held whole. `produce` is given the transaction's
        cursor for its own lookups between chunks; whatever it raises queues none. Each task may
        bring its extras (priority factors, breakdown, metadata: the fleet's add, pg_fleet.py).
        `check` runs after the last insert, inside the transaction, and may refuse all by raising
        (the per-language limit, which then sees these tasks among the open ones)."""
        try:
            with self.db.transaction() as cursor:
                writer = ChunkWriter(cursor)
                ids: list[int] = []
                for rows in produce(cursor):
                    for part in chunked(rows, CHUNK):
                        ids += writer.write(part)
                if check is not None:
                    check(cursor)
                return ids
        except psycopg.errors.UniqueViolation as exc:  # the same instance added by another node just now
            raise TaskError(
                f"a task of this import was queued at the same time ({exc.diag.message_detail}); "
                "run the import again (nothing was queued)"
            ) from None

    # -- reading ----------------------------------------------------------------------------

    def get_many(self, task_ids: Sequence[int]) -> list[Task]:
        """The tasks of `task_ids`, in that order; TaskError naming the first that does not exist."""
        found: dict[int, Task] = {}
        for part in chunked(task_ids, CHUNK):
            with self.db.transaction() as cursor:
                cursor.execute(f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = ANY(%s::bigint[])", (list(part),))
                found.update((task.id, task) for task in map(task_of, cursor.fetchall()))
        missing = [task_id for task_id in task_ids if task_id not in found]
        if missing:
            raise TaskError(f"no task {missing[0]}; `supervisor fleet tasks` shows the tasks there are")
        return [found[task_id] for task_id in task_ids]

    def _row(self, cursor: Cursor, task_id: int, *, lock: bool = False) -> Row:
        cursor.execute(f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = %s{' FOR UPDATE' if lock else ''}", (task_id,))
        row = cursor.fetchone()
        if row is None:
            raise TaskError(f"no task {task_id}; `supervisor task list` shows the tasks there are")
        return row

    def get(self, task_id: int) -> Task:
        with self.db.transaction() as cursor:
            return task_of(self._row(cursor, task_id))

    def find(
        self, *, states: Iterable[TaskState] | None = None, project: str | None = None, limit: int | None = None
    ) -> list[Task]:
        if limit is not None and limit < 0:
            raise TaskError(f"a limit of {limit} tasks makes no sense; give 0 or more")
        where, args = ["true"], dict[str, Any]()
        if states is not None:
            where.append("state = ANY(%(states)s::text[])")
            args["states"] = [TaskState(state).value for state in states]
        if project is not None:
            where.append("project = %(project)s")
            args["project"] = project
        args["limit"] = limit
        with self.db.transaction() as cursor:
            cursor.execute(
                f"SELECT {TASK_COLUMNS} FROM tasks WHERE {' AND '.join(where)} ORDER BY id LIMIT %(limit)s", args
            )
            return [task_of(row) for row in cursor.fetchall()]

    def counts(self) -> dict[TaskState, int]:
        with self.db.transaction() as cursor:
            cursor.execute("SELECT state, count(*) AS n FROM tasks GROUP BY state")
            found = {TaskState(row["state"]): int(row["n"]) for row in cursor.fetchall()}
        return {state: found.get(state, 0) for state in TaskState}

    def attempts(self, task_id: int) -> list[Attempt]:
        with self.db.transaction() as cursor:
            self._row(cursor, task_id)
            cursor.execute(f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE task_id = %s ORDER BY number", (task_id,))
            return [attempt_of(row) for row in cursor.fetchall()]

    def held_by(self, worker: str) -> list[tuple[Task, Claim]]:
        with self.db.transaction() as cursor:
            cursor.execute(
                f"SELECT {TASK_COLUMNS} FROM tasks WHERE worker = %s AND state IN {HELD_SQL} ORDER BY id", (worker,)
            )
            rows = cursor.fetchall()
        return [(task_of(row), claim_of(row)) for row in rows]

    # -- one attempt ------------------------------------------------------------------------

    def claim(self, worker: str, lease_s: float, *, projects: Iterable[str] | None = None) -> Claim | None:
        if not worker:
            raise TaskError("a claim needs a worker name")
        _positive(lease_s)
        only = None if projects is None else sorted(set(projects))
        if only == []:
            return None
        args = {"worker": worker, "lease": float(lease_s), "only": only}
        args["reason"] = f"its lease ran out; claimed again by {worker}"
        query = _CLAIM.format(only="" if only is None else "AND project = ANY(%(only)s::text[])")
        with self.db.statement() as cursor:  # one statement, its own transaction: one round trip
            cursor.execute(query, args)
            row = cursor.fetchone()
        return None if row is None else claim_of(row)

    def peek(self, *, projects: Iterable[str] | None = None) -> Task | None:
        only = None if projects is None else sorted(set(projects))
        if only == []:
            return None
        query = _PEEK.format(only="" if only is None else "AND project = ANY(%(only)s::text[])")
        with self.db.transaction() as cursor:
            cursor.execute(query, {"only": only})
            row = cursor.fetchone()
        return None if row is None else task_of(row)

    def _fenced(
        self,
        cursor: Cursor,
        claim: Claim,
        target: TaskState | None,
        changes: str,
        args: dict[str, Any],
        *,
        lease: bool = False,
    ) -> Row | None:
        """Apply `changes` when `claim` still holds the task (and the table allows `target`); else mark it late."""
        froms = [s.value for s in sorted(HELD) if target is None or target in ALLOWED[s]]
        query = _FENCED.format(changes=changes, lease="AND t.lease_expires_at > now()" if lease else "")
        cursor.execute(query, {**args, "id": claim.task_id, "fence": claim.fence, "froms": froms})
        row = cursor.fetchone()
        if row is not None:
            return row
        cursor.execute(
            f"SELECT state, fence, lease_expires_at > now() AS live FROM tasks WHERE id = %s AND state IN {HELD_SQL}",
            (claim.task_id,),
        )
        current = cursor.fetchone()
        if current is not None and current["fence"] == claim.fence and target is not None:
            if not lease or current["live"]:
                check_task(TaskState(current["state"]), target)  # held by this claim: the table forbids it
        cursor.execute(
            "UPDATE attempts SET refused_late = true WHERE task_id = %s AND number = %s AND fence = %s",
            (claim.task_id, claim.attempt, claim.fence),
        )
        return None

    def _end_attempt(
        self,
        cursor: Cursor,
        claim: Claim,
        state: TaskState,
        reason: str,
        result: str | None,
        tokens: int = 0,
        verdict: TaskVerdict | None = None,
    ) -> None:
        cursor.execute(
            "UPDATE attempts SET ended_at = now(), ended_as = %s, reason = %s, result_commit = %s, tokens = %s,"
            " verdict = %s WHERE task_id = %s AND number = %s",
            (
                state.value,
                reason,
                result,
                tokens,
                None if verdict is None else verdict_value(verdict),
                claim.task_id,
                claim.attempt,
            ),
        )

    def renew(self, claim: Claim, lease_s: float) -> Claim | None:
        _positive(lease_s)
        with self.db.transaction() as cursor:
            changes = "lease_expires_at = now() + make_interval(secs => %(lease)s)"
            row = self._fenced(cursor, claim, None, changes, {"lease": float(lease_s)}, lease=True)
            return (
                None if row is None else claim.model_copy(update={"lease_expires_at": claim_of(row).lease_expires_at})
            )

    def mark_judging(self, claim: Claim, result_commit: str, result_branch: str, summary: str) -> bool:
        with self.db.transaction() as cursor:
            changes = "state = 'judging', result_commit = %(commit)s, result_branch = %(branch)s, summary = %(summary)s"
            args = {"commit": result_commit, "branch": result_branch, "summary": summary}
            if self._fenced(cursor, claim, TaskState.JUDGING, changes, args, lease=True) is None:
                return False
            cursor.execute(
                "UPDATE attempts SET result_commit = %s WHERE task_id = %s AND number = %s",
                (result_commit, claim.task_id, claim.attempt),
            )
            return True

    def finish(self, claim: Claim, verdict: TaskVerdict) -> bool:
        with self.db.transaction() as cursor:
            changes = (
                "state = %(state)s, verdict = %(verdict)s, result_commit = COALESCE(%(commit)s, t.result_commit),"
                " worker = NULL, lease_expires_at = NULL"
            )
            args = {"state": verdict.state.value, "verdict": verdict_value(verdict), "commit": verdict.result_commit}
            row = self._fenced(cursor, claim, verdict.state, changes, args, lease=True)
            if row is None:
                return False
            self._end_attempt(
                cursor, claim, verdict.state, verdict.reason, row["result_commit"], verdict.tokens, verdict
            )
            return True

    def release(self, claim: Claim, reason: str) -> bool:
        with self.db.transaction() as cursor:
            args = {"state": TaskState.QUEUED.value, "note": reason}
            row = self._fenced(cursor, claim, TaskState.QUEUED, _UNHOLD, args)
            if row is None:
                return False
            self._end_attempt(cursor, claim, TaskState.QUEUED, reason, row["was_result"])
            return True

    # -- the operator -----------------------------------------------------------------------

    def cancel(self, task_id: int, reason: str) -> Task:
        with self.db.transaction() as cursor:
            row = self._row(cursor, task_id, lock=True)
            before = TaskState(row["state"])
            if before not in (TaskState.QUEUED, *HELD):
                raise TaskError(f"task {task_id} is {before} already; only a queued or running task can be cancelled")
            check_task(before, TaskState.CANCELLED)
            cursor.execute(
                f"UPDATE tasks SET {_UNHOLD}, updated_at = now() WHERE id = %(id)s",
                {"state": TaskState.CANCELLED.value, "note": reason, "id": task_id},
            )
            if before in HELD:
                self._end_attempt(cursor, claim_of(row), TaskState.CANCELLED, reason, row["result_commit"])
            return task_of(self._row(cursor, task_id))

    def retry(self, task_id: int) -> Task:
        with self.db.transaction() as cursor:
            row = self._row(cursor, task_id, lock=True)
            before = TaskState(row["state"])
            if before in (TaskState.QUEUED, *HELD):
                raise TaskError(f"task {task_id} is {before}; only a finished or cancelled task can be retried")
            check_task(before, TaskState.QUEUED)
            cursor.execute(
                f"UPDATE tasks SET {_UNHOLD}, updated_at = now() WHERE id = %(id)s",
                {"state": TaskState.QUEUED.value, "note": f"retried after {before}", "id": task_id},
            )
            return task_of(self._row(cursor, task_id))

    def close(self) -> None:
        if self._owns:
            self.db.close()
