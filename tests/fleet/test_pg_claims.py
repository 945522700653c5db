"""Claims on the fleet's queue under contention, lease expiry and a node's clock an hour off."""

from __future__ import annotations

import multiprocessing
import sys
import threading
import time
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor.base.pg.pool import Database
from supervisor.store.tasks.models import TaskState, TaskVerdict
from supervisor.store.tasks.pg_queue import PostgresTaskQueue
from tests.tasks.queue_specs import BASE, new_task


def _claim_until_empty(db: Database, worker: str, gate: threading.Barrier | None) -> list[int]:
    queue = PostgresTaskQueue(db, check=False)
    if gate is not None:
        gate.wait()
    taken = []
    while (claim := queue.claim(worker, 60)) is not None:
        taken.append(claim.task_id)
    return taken


def _run_claimers(url: str, password: str, claimers: int) -> list[list[int]]:
    """`claimers` threads, each with its own connection, started together; the ids each claimed."""
    dbs = [
        Database(url, password=password, application_name=f"c{n}", min_size=1, max_size=1).open()
        for n in range(claimers)
    ]
    taken: list[list[int]] = [[] for _ in range(claimers)]
    gate = threading.Barrier(claimers)

    def work(slot: int) -> None:
        taken[slot] = _claim_until_empty(dbs[slot], f"claimer-{slot}", gate)

    threads = [threading.Thread(target=work, args=(slot,)) for slot in range(claimers)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        for db in dbs:
            db.close()
    return taken


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tasks=st.integers(min_value=0, max_value=300), claimers=st.integers(min_value=2, max_value=50))
def test_concurrent_claimers_never_claim_one_task_twice(pg_cluster, pg_database, fleet_queue, tasks, claimers) -> None:
    with fleet_queue.db.transaction() as cursor:
        cursor.execute("TRUNCATE attempts, tasks")
    fleet_queue.add_many(new_task(f"t{i}", priority=i % 5, project=("demo", "alpha")[i % 2]) for i in range(tasks))
    taken = _run_claimers(pg_database, pg_cluster.password, claimers)
    every = [task_id for ids in taken for task_id in ids]
    assert len(every) == len(set(every)) == tasks
    assert fleet_queue.counts()[TaskState.RUNNING] == tasks
    for slot, ids in enumerate(taken):
        assert sorted(t.id for t, _ in fleet_queue.held_by(f"claimer-{slot}")) == sorted(ids)
        assert all(claim.fence == 1 for _, claim in fleet_queue.held_by(f"claimer-{slot}"))


def test_fifty_claimers_in_ten_processes(pg_cluster, pg_database, fleet_queue) -> None:
    fleet_queue.add_many(new_task(f"t{i}", priority=i % 3) for i in range(1000))
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(10), context.Queue()
    children = [
        context.Process(target=_process_claims, args=(pg_database, pg_cluster.password, n, start, results))
        for n in range(10)
    ]
    for child in children:
        child.start()
    taken = [results.get(timeout=180) for _ in children]
    for child in children:
        child.join(30)
        assert child.exitcode == 0
    every = [task_id for ids in taken for task_id in ids]
    assert len(every) == len(set(every)) == 1000
    assert sum(1 for ids in taken if ids) >= 2, "the processes did not overlap at all"


def _process_claims(url: str, password: str, n: int, start: object, results: object) -> None:
    """Five claimer threads in one process, each with its own connection; every id claimed goes to `results`."""
    sys.path.insert(0, ".")
    dbs = [
        Database(url, password=password, application_name=f"p{n}-{k}", min_size=1, max_size=1).open() for k in range(5)
    ]
    taken: list[int] = []
    start.wait()  # type: ignore[attr-defined]
    threads = [
        threading.Thread(target=lambda db=db, k=k: taken.extend(_claim_until_empty(db, f"p{n}-{k}", None)))
        for k, db in enumerate(dbs)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for db in dbs:
        db.close()
    results.put(taken)  # type: ignore[attr-defined]


def _db_now(queue: PostgresTaskQueue) -> datetime:
    with queue.db.transaction() as cursor:
        cursor.execute("SELECT clock_timestamp() AS now")
        return cursor.fetchone()["now"]  # type: ignore[index,no-any-return]


def test_an_expired_lease_is_taken_over_and_the_late_result_refused(fleet_queue: PostgresTaskQueue) -> None:
    task = fleet_queue.add(new_task())
    first = fleet_queue.claim("node-a", 0.5)
    assert first is not None
    assert fleet_queue.claim("node-b", 60) is None  # live: not claimable
    time.sleep(0.8)
    second = fleet_queue.claim("node-b", 60)
    assert second is not None and second.task_id == task.id and second.fence == first.fence + 1
    assert second.attempt == 2
    verdict = TaskVerdict(outcome="failed", reason="late", base_commit=BASE)
    assert fleet_queue.mark_judging(first, "c" * 40, "late", "late") is False
    assert fleet_queue.finish(first, verdict) is False
    assert fleet_queue.renew(first, 60) is None
    held = fleet_queue.get(task.id)
    assert held.state is TaskState.RUNNING and held.worker == "node-b" and held.verdict is None
    old, new = fleet_queue.attempts(task.id)
    assert old.refused_late and old.ended_as is TaskState.QUEUED and "lease ran out" in (old.reason or "")
    assert not new.refused_late and new.worker == "node-b"
    assert fleet_queue.mark_judging(second, "d" * 40, "b", "s")
    assert fleet_queue.finish(second, TaskVerdict(outcome="passed", reason="ok", base_commit=BASE))
    assert fleet_queue.get(task.id).state is TaskState.PASSED


def test_a_judging_task_whose_node_died_is_taken_over(fleet_queue: PostgresTaskQueue) -> None:
    task = fleet_queue.add(new_task())
    dead = fleet_queue.claim("dead", 0.3)
    assert dead is not None and fleet_queue.mark_judging(dead, "c" * 40, "branch", "summary")
    time.sleep(0.5)
    alive = fleet_queue.claim("alive", 60)
    assert alive is not None and alive.fence == 2
    again = fleet_queue.get(task.id)
    assert again.state is TaskState.RUNNING and again.result_commit is None and again.summary is None


class _Skewed:
    """The Python clock of this process moved by `offset`: time.time and datetime.now in every loaded module."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, offset: timedelta) -> None:
        real_time, real_ns, real = time.time, time.time_ns, datetime
        seconds = offset.total_seconds()

        class SkewedDatetime(datetime):
            @classmethod
            def now(cls, tz=None):  # type: ignore[no-untyped-def,override]
                return real.now(tz) + offset

            @classmethod
            def utcnow(cls):  # type: ignore[no-untyped-def,override]
                return real.utcnow() + offset

        monkeypatch.setattr(time, "time", lambda: real_time() + seconds)
        monkeypatch.setattr(time, "time_ns", lambda: real_ns() + int(seconds * 1e9))
        patched = []
        for name, module in list(sys.modules.items()):
            if name.startswith(("supervisor", "psycopg", "tests")) and getattr(module, "datetime", None) is real:
                monkeypatch.setattr(module, "datetime", SkewedDatetime)
                patched.append(name)
        assert "supervisor.store.tasks.pg_rows" in patched and "psycopg.types.datetime" in patched


@pytest.mark.parametrize("hours", [1, -1])
def test_a_node_with_its_clock_an_hour_off(monkeypatch: pytest.MonkeyPatch, open_db, fleet_queue, hours: int) -> None:
    """Ahead, the node would think a live lease expired; behind, that an expired one is live. Neither matters:
    leases are computed and compared by the database's clock only."""
    live = fleet_queue.add(new_task("live", priority=9))
    expiring = fleet_queue.add(new_task("expiring", priority=5))
    spare = fleet_queue.add(new_task("spare", priority=1))
    honest = fleet_queue.claim("honest", 600)
    stale = fleet_queue.claim("stale", 600)
    assert honest is not None and honest.task_id == live.id and stale is not None and stale.task_id == expiring.id
    with fleet_queue.db.transaction() as cursor:  # the stale holder's lease ran out, by the database's clock
        cursor.execute("UPDATE tasks SET lease_expires_at = now() - interval '1 second' WHERE id = %s", (expiring.id,))
    skewed = PostgresTaskQueue(open_db("skewed"))
    _Skewed(monkeypatch, timedelta(hours=hours))
    assert abs(time.time() - _db_now(skewed).timestamp() - hours * 3600) < 5
    assert skewed.renew(stale, 3600) is None  # expired, whatever this node's clock says
    taken = skewed.claim("skewed", 60)
    assert taken is not None and taken.task_id == expiring.id and taken.fence == stale.fence + 1
    expected = _db_now(skewed) + timedelta(seconds=60)
    assert abs(taken.lease_expires_at - expected) < timedelta(seconds=5)  # the database's now, not ours
    assert skewed.renew(taken, 120) is not None
    following = skewed.claim("skewed", 60)
    assert following is not None and following.task_id == spare.id
    assert skewed.claim("skewed", 60) is None  # the live lease of `honest` is not taken
    assert fleet_queue.get(live.id).worker == "honest"
    monkeypatch.undo()
    assert fleet_queue.renew(honest, 600) is not None
