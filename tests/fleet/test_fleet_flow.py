"""Two supervisors' task flows as nodes of one fleet: a real PostgreSQL queue, real mirrors and files.

A stand-in judge (tests/tasks/flow_rig.py) keeps containers out: what is tested is who holds which
task, what a node that paused past its lease may still do (nothing), and where results go.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from supervisor.base.pg.pool import Database
from supervisor.loop.fleet_node import FleetNode
from supervisor.loop.task_flow import Holding
from supervisor.loop.task_steps import TaskSteps
from supervisor.store.tasks.models import TaskState
from supervisor.store.tasks.pg_queue import PostgresTaskQueue
from supervisor.work.results_remote import share_result
from tests.tasks.flow_rig import FlowRig

pytestmark = pytest.mark.postgres
_S = TaskState


def _node(
    root: Path,
    name: str,
    open_db: Callable[..., Database],
    *,
    lease_s: float = 600,
    may_claim: Callable[[], bool] = lambda: True,
    results: Path | None = None,
    like: FlowRig | None = None,
    wait_s: float = 30,
) -> FlowRig:
    def open_queue(_home: Path) -> PostgresTaskQueue:
        queue = PostgresTaskQueue(open_db(name, wait_s=wait_s))
        queue.add_project("calc", "file:///srv/calc.git")
        return queue

    share = (lambda mirror, ref, commit: share_result(mirror, ref, commit, str(results))) if results else None
    holding = Holding(worker=name, lease_s=lease_s, renew_s=0.0, may_claim=may_claim, share=share)
    rig = FlowRig(root / name, open_queue=open_queue, holding=holding)
    if like is not None:  # every node mirrors the same project: the same base commit
        shutil.rmtree(rig.mirror)
        subprocess.run(["git", "clone", "-q", "--bare", str(like.mirror), str(rig.mirror)], check=True)
        rig.base = like.base
    return rig


def test_two_nodes_never_hold_one_task_and_each_verdict_is_applied_once(tmp_path, open_db) -> None:
    a = _node(tmp_path, "node-a", open_db)
    b = _node(tmp_path, "node-b", open_db, like=a)
    first, second = a.add("first", priority=2).id, a.add("second", priority=1).id
    a.flow.recover()
    b.flow.recover()
    assert (a.task_file()["id"], b.task_file()["id"]) == (first, second)
    assert a.queue.get(first).worker == "node-a" and a.queue.get(second).worker == "node-b"
    a.done(first)
    b.done(second)
    a.flow.take_results(a.outbox)
    b.flow.take_results(b.outbox)
    assert (a.state(first), a.state(second)) == (_S.PASSED, _S.PASSED)
    assert [d["applied"] for d in a.judged(first)] == [True] and b.judged(first) == []
    assert [d["applied"] for d in b.judged(second)] == [True] and a.judged(second) == []


def test_a_node_paused_past_its_lease_loses_the_task_and_its_late_result_is_refused(tmp_path, open_db) -> None:
    a = _node(tmp_path, "node-a", open_db, lease_s=1.0)
    b = _node(tmp_path, "node-b", open_db, like=a)
    task = a.add().id
    a.flow.recover()
    assert a.task_file()["id"] == task
    time.sleep(1.5)  # node a is stopped (SIGSTOP) past its lease, by the database's clock
    b.flow.recover()
    assert b.task_file()["id"] == task and b.queue.get(task).worker == "node-b"
    b.done(task)
    b.flow.take_results(b.outbox)
    assert b.state(task) is _S.PASSED
    # Node a wakes up still "working" and says it is done: nothing of it is applied.
    a.done(task)
    a.flow.take_results(a.outbox)
    a.flow.tick()
    assert a.state(task) is _S.PASSED and [d["applied"] for d in b.judged(task)] == [True]
    assert all(not d.get("applied") for d in a.judged(task))
    assert a.task_file() is None and not a.area.exists()  # it stopped working on it
    attempts = a.queue.attempts(task)
    assert [x.worker for x in attempts] == ["node-a", "node-b"] and attempts[1].ended_as is _S.PASSED
    assert attempts[0].refused_late and not attempts[1].refused_late  # its late result is recorded


def test_a_node_paused_past_its_lease_that_only_wakes_up_records_its_late_attempt(tmp_path, open_db) -> None:
    a = _node(tmp_path, "node-a", open_db, lease_s=1.0)
    b = _node(tmp_path, "node-b", open_db, like=a)
    task = a.add().id
    a.flow.recover()
    time.sleep(1.5)
    b.flow.recover()
    a.flow.tick()  # it wakes up before its agent says anything: it learns the task is gone, and says so
    assert a.task_file() is None and not a.area.exists()
    first, second = a.queue.attempts(task)
    assert first.worker == "node-a" and first.refused_late and not second.refused_late
    assert a.queue.get(task).worker == "node-b" and a.state(task) is _S.RUNNING


def test_a_draining_node_claims_nothing_and_others_take_the_work(tmp_path, open_db) -> None:
    draining = {"yes": True}
    a = _node(tmp_path, "node-a", open_db, may_claim=lambda: not draining["yes"])
    b = _node(tmp_path, "node-b", open_db, like=a)
    task = a.add().id
    a.flow.recover()
    assert a.task_file() is None and a.state(task) is _S.QUEUED
    b.flow.recover()
    assert b.task_file()["id"] == task


def test_a_result_reaches_the_shared_results_repository(tmp_path, open_db) -> None:
    results = tmp_path / "results.git"
    subprocess.run(["git", "init", "-q", "--bare", str(results)], check=True)
    a = _node(tmp_path, "node-a", open_db, results=results)
    task = a.add().id
    a.flow.recover()
    (a.area / "calc.py").write_text("def mul(a, b):\n    return a * b\n")
    a.done(task)
    a.flow.take_results(a.outbox)
    held = a.queue.get(task)
    shared = subprocess.run(
        ["git", "--git-dir", str(results), "rev-parse", held.result_branch], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert shared == held.result_commit


def test_a_result_after_the_lease_ran_out_is_refused_even_before_another_node_claims(tmp_path, open_db) -> None:
    a = _node(tmp_path, "node-a", open_db, lease_s=1.0)
    task = a.add().id
    a.flow.recover()
    claim = a.flow.active.claim
    time.sleep(1.5)  # paused past its lease; no other node has claimed the task yet
    assert a.queue.mark_judging(claim, a.base, "refs/ouroboros/tasks/late", "late") is False
    assert [x.refused_late for x in a.queue.attempts(task)] == [True]
    a.done(task)
    a.flow.take_results(a.outbox)  # its lease is gone: that attempt ends unjudged, the task is claimable again
    assert a.judged(task) == [] and a.judge.calls == []
    attempts = a.queue.attempts(task)
    assert len(attempts) == 2 and attempts[0].ended_as is _S.QUEUED  # taken again, by the database's clock
    assert a.queue.get(task).fence > claim.fence


def _beating(open_db: Callable[..., Database], rig: FlowRig, name: str) -> tuple[FleetNode, TaskSteps]:
    fleet = FleetNode(open_db(f"{name}-beat", wait_s=2), name=name, home=str(rig.home), heartbeat_s=1)
    return fleet, TaskSteps(rig.flow, fleet, rig.outbox)


def test_a_result_given_while_the_database_was_gone_is_judged_once_it_answers(tmp_path, pg_cluster, open_db) -> None:
    a = _node(tmp_path, "node-a", open_db, wait_s=2)
    fleet, steps = _beating(open_db, a, "node-a")
    task = a.add().id
    fleet.start()
    steps.recover()
    assert a.task_file()["id"] == task
    pg_cluster.stop_server()
    try:
        a.done(task)
        steps.take_results()  # the database is gone: the result waits in the outbox, the node claims nothing
        assert not fleet.reachable and not fleet.may_claim() and a.outbox_files()
        a.spent = 10**9  # the agent went on working on its own goals meanwhile
        steps.tick()
    finally:
        pg_cluster.start_server()
    fleet.start()  # its next beat (RETRY_S later in a running supervisor)
    steps.tick()  # the result first: judged, not given up for what it spent while nobody could judge
    assert a.state(task) is _S.PASSED and [d["applied"] for d in a.judged(task)] == [True]
    assert a.outbox_files() == []


def test_a_node_started_while_the_database_is_gone_recovers_its_task_once_it_answers(
    tmp_path, pg_cluster, open_db
) -> None:
    a = _node(tmp_path, "node-a", open_db, wait_s=2)
    task = a.add().id
    a.flow.recover()
    assert a.task_file()["id"] == task
    a.queue.close()  # killed: the next start finds the database gone
    a.flow = a._flow()
    fleet, steps = _beating(open_db, a, "node-a")
    pg_cluster.stop_server()
    try:
        fleet.start()
        steps.recover()
        a.done(task)
        steps.take_results()
        steps.tick()
        assert not fleet.reachable
    finally:
        pg_cluster.start_server()
    fleet.start()
    steps.tick()  # recovered (its task resumed), then the result taken and judged
    assert a.state(task) is _S.PASSED and [x.worker for x in a.queue.attempts(task)] == ["node-a"]
