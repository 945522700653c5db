"""A task's lease in the fleet while its work is judged: renewed from a thread of its own, on a real PostgreSQL queue.

A judge that outlasts the lease (lease 2 s, judge 5 s) keeps the task: no other node claims it and
the verdict is applied. A lease lost mid-judge (the operator cancels the task; or renewals came too
late and another node claimed it) is logged, and the late verdict is refused by the queue's fenced
write. The stand-in judge (tests/tasks/flow_rig.py) makes the timing exact; the last case runs the
project's tests in real containers under the same short lease.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from supervisor.base.pg.pool import Database
from supervisor.loop.lease_keeper import LeaseKeeper
from supervisor.loop.task_flow import Holding
from supervisor.store.tasks.models import Claim, NewTask, TaskState
from supervisor.store.tasks.pg_queue import PostgresTaskQueue
from supervisor.work.task_judge import TaskJudge
from tests.tasks.flow_rig import FlowRig, Killed, SlowJudge, renewal_threads
from tests.tasks.task_factory import F2P, FIXED_OPS, HIDDEN_TEST, make_patch

pytestmark = pytest.mark.postgres
_S = TaskState
LOST = "its lease was lost while it was judged"


def _node(root: Path, name: str, open_db: Callable[..., Database], *, lease_s: float, renew_s: float) -> FlowRig:
    def open_queue(_home: Path) -> PostgresTaskQueue:
        queue = PostgresTaskQueue(open_db(name))
        queue.add_project("calc", "file:///srv/calc.git")
        return queue

    return FlowRig(root / name, open_queue=open_queue, holding=Holding(worker=name, lease_s=lease_s, renew_s=renew_s))


def _claim_as_b(rig: FlowRig, got: list[Claim | None]) -> Callable[[], None]:
    """Another node's claim, made mid-judge (it may claim a task whose lease ran out)."""
    return lambda: got.append(rig.queue.claim("node-b", 600, projects=["calc"]))


def _lost_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if LOST in r.getMessage()]


def test_a_judge_longer_than_the_lease_keeps_the_task_and_its_verdict_is_applied(tmp_path, open_db, caplog) -> None:
    caplog.set_level(logging.WARNING)
    a = _node(tmp_path, "node-a", open_db, lease_s=2.0, renew_s=0.5)
    task = a.add().id
    a.flow.recover()
    first_lease = a.queue.get(task).lease_expires_at
    claims: list[Claim | None] = []
    a.flow.judge = SlowJudge(5.0, at=3.5, meanwhile=_claim_as_b(a, claims))  # 3.5 s: past any lease not renewed
    a.done(task)
    started = time.monotonic()
    a.flow.take_results(a.outbox)
    assert time.monotonic() - started >= 5.0
    assert claims == [None]  # node b found nothing to claim: the lease was still live
    held = a.queue.get(task)
    assert held.state is _S.PASSED and first_lease is not None and held.updated_at > first_lease
    assert [d["applied"] for d in a.judged(task)] == [True]
    attempts = a.queue.attempts(task)
    assert [(x.worker, x.ended_as, x.refused_late) for x in attempts] == [("node-a", _S.PASSED, False)]
    assert _lost_lines(caplog) == [] and renewal_threads() == []


def test_a_task_cancelled_mid_judge_is_logged_and_its_verdict_refused(tmp_path, open_db, caplog) -> None:
    caplog.set_level(logging.WARNING)
    a = _node(tmp_path, "node-a", open_db, lease_s=2.0, renew_s=0.5)
    task = a.add().id
    a.flow.recover()
    a.flow.judge = SlowJudge(2.0, at=0.2, meanwhile=lambda: a.queue.cancel(task, "the operator changed their mind"))
    a.done(task)
    a.flow.take_results(a.outbox)
    assert a.state(task) is _S.CANCELLED and a.queue.get(task).verdict is None
    assert [d["applied"] for d in a.judged(task)] == [False]
    (attempt,) = a.queue.attempts(task)
    assert attempt.ended_as is _S.CANCELLED and attempt.refused_late
    assert len(_lost_lines(caplog)) == 1 and f"task {task}:" in _lost_lines(caplog)[0]  # once: renewals stop
    assert renewal_threads() == [] and a.task_file() is None


def test_a_task_claimed_away_mid_judge_is_logged_and_the_late_verdict_leaves_the_new_holder_alone(
    tmp_path, open_db, caplog
) -> None:
    caplog.set_level(logging.WARNING)
    # Renewals that come too late (a node stalled past its lease): node b claims the task meanwhile.
    a = _node(tmp_path, "node-a", open_db, lease_s=1.0, renew_s=2.5)
    task = a.add().id
    a.flow.recover()
    claims: list[Claim | None] = []
    a.flow.judge = SlowJudge(3.5, at=1.5, meanwhile=_claim_as_b(a, claims))
    a.done(task)
    a.flow.take_results(a.outbox)
    assert claims[0] is not None and claims[0].task_id == task
    held = a.queue.get(task)
    assert held.state is _S.RUNNING and held.worker == "node-b" and held.fence == claims[0].fence
    assert [d["applied"] for d in a.judged(task)] == [False]
    first, second = a.queue.attempts(task)
    assert (first.worker, first.refused_late) == ("node-a", True)
    assert (second.worker, second.refused_late, second.ended_at) == ("node-b", False, None)
    assert len(_lost_lines(caplog)) == 1 and renewal_threads() == []


def test_renewals_stop_when_the_judge_is_killed(tmp_path, open_db) -> None:
    a = _node(tmp_path, "node-a", open_db, lease_s=2.0, renew_s=0.2)
    task = a.add().id
    a.flow.recover()
    a.flow.judge = SlowJudge(1.0, raises=Killed("kill -9 mid-judge"))
    a.done(task)
    with pytest.raises(Killed):
        a.flow.take_results(a.outbox)
    assert renewal_threads() == [] and a.state(task) is _S.JUDGING
    lease = a.queue.get(task).lease_expires_at
    time.sleep(0.6)
    assert a.queue.get(task).lease_expires_at == lease
    time.sleep(2.0)  # nothing renews it: once due, another node may take the task
    assert a.queue.claim("node-b", 600, projects=["calc"]) is not None


@pytest.mark.docker
def test_the_real_judge_outlasting_the_lease_keeps_the_task(
    tmp_path, open_db, docker_engine, agent_image, sandbox_instance
) -> None:
    a = _node(tmp_path, "node-a", open_db, lease_s=2.0, renew_s=0.5)
    a.flow.judge = TaskJudge(
        docker_engine,
        scratch=tmp_path / "scratch",
        instance=sandbox_instance,
        cache=tmp_path / "cache",
        agent_image=lambda: agent_image,
    )
    slow = "import time\n\n\ndef test_slow():\n    time.sleep(3)\n"  # the project's tests outlast the lease
    patch = make_patch(
        a.registry.folder("calc") / "seed", {"tests/test_mul.py": HIDDEN_TEST, "tests/test_slow.py": slow}
    )
    task = a.queue.add(
        NewTask(project="calc", title="mul is wrong", base_commit=a.base, fail_to_pass=F2P, test_patch=patch)
    ).id
    a.flow.recover()
    (a.area / "calc" / "ops.py").write_text(FIXED_OPS)
    a.done(task)
    judging = threading.Thread(target=a.flow.take_results, args=(a.outbox,))
    judging.start()
    claims: list[Claim | None] = []
    while judging.is_alive():  # node b tries all along: the task is never free
        claims.append(a.queue.claim("node-b", 600, projects=["calc"]))
        time.sleep(0.25)
    judging.join()
    held = a.queue.get(task)
    assert held.state is _S.PASSED and held.verdict is not None, held.verdict
    assert held.verdict.duration_s > 3 * 2.0  # base and result each ran 3 s of tests: past the lease 3 times
    assert claims and not any(claims)
    assert [d["applied"] for d in a.judged(task)] == [True]
    assert [(x.worker, x.refused_late) for x in a.queue.attempts(task)] == [("node-a", False)]


def test_renewals_outlive_an_error_the_pool_does_not_explain(open_db, caplog) -> None:
    """Renewals meet an error that is not a DatabaseError for a while (here a trigger refuses every
    update of a task, as a read-only standby or a constraint an operator added would): the renewal
    thread logs it and tries again, and once the database takes writes again the lease is kept."""
    caplog.set_level(logging.WARNING)
    queue = PostgresTaskQueue(open_db("node-a"))
    queue.add_project("calc", "file:///srv/calc.git")
    task = queue.add(NewTask(project="calc", title="t", base_commit="0" * 40)).id
    claim = queue.claim("node-a", 1.0)
    assert claim is not None
    with queue.db.transaction() as cursor:
        cursor.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'tasks are read-only for maintenance'; END $$"
        )
    with LeaseKeeper(queue, claim, lease_s=1.0, every_s=0.1, doing="judged") as keeper:
        with queue.db.transaction() as cursor:
            cursor.execute("CREATE TRIGGER refuse BEFORE UPDATE ON tasks FOR EACH ROW EXECUTE FUNCTION refuse()")
        time.sleep(0.5)
        before = keeper.renewals
        with queue.db.transaction() as cursor:
            cursor.execute("DROP TRIGGER refuse ON tasks")
        time.sleep(1.5)  # past the lease of the last renewal before the refusals
        assert keeper.renewals > before and not keeper.lost
        assert queue.claim("node-b", 600, projects=["calc"]) is None  # still held by node-a
    said = [r.getMessage() for r in caplog.records if "could not be renewed" in r.getMessage()]
    assert said and "read-only for maintenance" in said[0]
    assert queue.get(task).worker == "node-a" and renewal_threads() == []
