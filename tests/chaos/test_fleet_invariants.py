"""The fleet chaos test's checks fail when they should: each broken invariant, made by hand on a real queue
and a real fleet budget.

A fleet of two tasks and two nodes' decision logs; one correct history passes, and each way of
breaking it (a second applied verdict, a verdict applied from an attempt that is not the last, a
refused verdict whose attempt is not marked late, a task left held, a task lost) is named.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from supervisor.base.pg.pool import Database
from supervisor.route import LEDGER_FILE_NAME
from supervisor.route.fleet_budget import FleetBudget, FleetCaps
from supervisor.route.ledger import Ledger, LedgerEntry, Reservation
from supervisor.route.pricing import Usage
from supervisor.store.decision_kinds import DecisionKind
from supervisor.store.decision_log import DecisionLog
from supervisor.store.tasks.models import Claim, NewTask, TaskVerdict
from supervisor.store.tasks.pg_queue import PostgresTaskQueue
from tests.chaos.fleet_ledger import audit_fleet_ledger
from tests.chaos.fleet_nodes import fleet_problems

pytestmark = pytest.mark.postgres
BASE = "a" * 40


@pytest.fixture
def queue(pg_cluster, pg_database: str) -> Iterator[PostgresTaskQueue]:
    with Database(pg_database, password=pg_cluster.password, application_name="checks", min_size=1) as db:
        fleet = PostgresTaskQueue(db.open())
        fleet.add_project("sample", "file:///srv/sample.git")
        yield fleet


def _node(root: Path, name: str) -> SimpleNamespace:
    return SimpleNamespace(log=DecisionLog(root / name / "decisions.jsonl"), common=root / name)


def _judged(node: SimpleNamespace, task: int, attempt: int, *, applied: bool) -> None:
    details = {"task": task, "attempt": attempt, "outcome": "failed", "applied": applied}
    node.log.append(DecisionKind.TASK_JUDGED, details=details)


def _finish(queue: PostgresTaskQueue, claim: Claim) -> bool:
    """Judging, then a verdict, as a node ends an attempt (both fenced)."""
    judging = queue.mark_judging(claim, BASE, f"refs/heads/task-{claim.task_id}-{claim.attempt}", "done")
    verdict = TaskVerdict(outcome="failed", reason="still failing", base_commit=BASE)
    return queue.finish(claim, verdict) and judging


def _history(queue: PostgresTaskQueue, a: SimpleNamespace, b: SimpleNamespace) -> tuple[int, int]:
    """Task 1: node a's lease runs out, node b finishes it, a's late verdict is refused. Task 2: a finishes it."""
    first, second = (
        t.id for t in queue.add_many([NewTask(project="sample", title=f"t{n}", base_commit=BASE) for n in (1, 2)])
    )
    late = queue.claim("node-a", 0.2)
    assert late is not None and late.task_id == first
    time.sleep(0.4)
    taken = queue.claim("node-b", 60)
    assert taken is not None and taken.task_id == first
    assert _finish(queue, taken)
    _judged(b, first, taken.attempt, applied=True)
    assert not _finish(queue, late)
    _judged(a, first, late.attempt, applied=False)
    claim = queue.claim("node-a", 60)
    assert claim is not None and claim.task_id == second and _finish(queue, claim)
    _judged(a, second, claim.attempt, applied=True)
    return first, second


def test_a_correct_history_passes_and_each_broken_invariant_is_named(tmp_path, queue) -> None:
    a, b = _node(tmp_path, "a"), _node(tmp_path, "b")
    first, second = _history(queue, a, b)
    assert fleet_problems(queue, [a, b], 2) == []  # type: ignore[list-item]
    assert fleet_problems(queue, [a, b], 3) == ["2 tasks in the fleet, not 3"]  # type: ignore[list-item]

    twice = _node(tmp_path, "twice")
    _judged(twice, second, 1, applied=True)
    assert "2 applied task-judged records" in " ".join(fleet_problems(queue, [a, b, twice], 2))  # type: ignore[list-item]

    stale = _node(tmp_path, "stale")
    _judged(stale, first, 1, applied=True)
    problems = " ".join(fleet_problems(queue, [a, stale], 2))  # type: ignore[list-item]
    assert f"task {first}: the applied verdict is attempt 1, not the last" in problems

    unmarked = _node(tmp_path, "unmarked")
    _judged(unmarked, second, 1, applied=False)
    problems = " ".join(fleet_problems(queue, [a, b, unmarked], 2))  # type: ignore[list-item]
    assert f"task {second}: a refused verdict whose attempt is not marked late" in problems

    held = queue.add(NewTask(project="sample", title="t3", base_commit=BASE))
    assert queue.claim("node-a", 60) is not None
    problems = " ".join(fleet_problems(queue, [a, b], 3))  # type: ignore[list-item]
    assert f"task {held.id} ended running (worker 'node-a'), not with a verdict" in problems


def _local_ledger(state: Path, entries: list[tuple[str, int, int | None]]) -> None:
    """A node's own ledger: (reservation id, worst case, tokens recorded or None: still open)."""
    ledger = Ledger.open(state / LEDGER_FILE_NAME)
    now = datetime.now(UTC)
    try:
        for rid, worst, used in entries:
            held = Usage(input_tokens=worst)
            common = {"ts": now, "run_id": "run", "cycle": "c", "model": "m"}
            ledger.append(Reservation(id=rid, day="2026-01-01", usage=held, cost_usd=Decimal(0), **common))
            if used is not None:
                spend = LedgerEntry(
                    stream=False, status=200, message_id=f"msg-{rid}", complete=True, usage=Usage(input_tokens=used),
                    cost_usd=Decimal(0), reservation=rid, **common,
                )  # fmt: skip
                ledger.append(spend)
    finally:
        ledger.close()


def test_the_fleet_ledger_audit_passes_a_ledger_that_adds_up_and_names_each_one_that_does_not(
    tmp_path, pg_cluster, pg_database
) -> None:
    with Database(pg_database, password=pg_cluster.password, application_name="ledger", min_size=1) as db:
        budget = FleetBudget(db.open(), "node-a", FleetCaps(weekly_tokens=10**6), tmp_path / "pending.jsonl").open()
        try:
            for rid, worst, used in (("r1", 100, 40), ("r2", 80, 80)):
                assert budget.reserve(rid, "run", "m", worst, Decimal(0)) is None
                budget.settle(rid, used, Decimal(0))
            node = SimpleNamespace(state=tmp_path / "a")
            node.state.mkdir()
            _local_ledger(node.state, [("r1", 100, 40), ("r2", 80, 80)])
            nodes: dict[str, Any] = {"node-a": node}
            good = audit_fleet_ledger(db, nodes, kills=0)
            assert good.problems == [] and good.settled == {"spent": 2} and good.tokens == 120

            _local_ledger(node.state, [("r3", 50, 20)])  # recorded by the node, never settled in the fleet
            assert budget.reserve("r4", "run", "m", 60, Decimal(0)) is None  # held in the fleet, never settled
            problems = " ".join(audit_fleet_ledger(db, nodes, kills=0).problems)
            assert "answer msg-r3 (r3) is not in the fleet's ledger" in problems
            assert "reservation r4 of node-a:" in problems and "still open at the end" in problems
            assert "fleet settlement" not in problems  # r1 and r2 still add up

            other = SimpleNamespace(state=tmp_path / "b")
            other.state.mkdir()
            _local_ledger(other.state, [("r1", 100, 41), ("r2", 80, 80)])  # the node says 41, the fleet charged 40
            problems = " ".join(audit_fleet_ledger(db, {"node-a": other}, kills=0).problems)
            assert "r1: the fleet charged 40" in problems
        finally:
            budget.close()
