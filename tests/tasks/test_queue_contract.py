"""The TaskQueue contract (supervisor/store/tasks/queue.py), held against every implementation."""

from __future__ import annotations

import multiprocessing
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from supervisor.store.tasks.models import HELD, Claim, TaskError, TaskState, TaskVerdict
from supervisor.store.tasks.queue import TaskQueue
from tests.tasks.queue_specs import BASE, QueueSpec, claim_all, claim_all_together, new_task

RESULT = "b" * 40


def verdict(outcome: str = "passed", tokens: int = 0) -> TaskVerdict:
    return TaskVerdict(outcome=outcome, reason=f"judged {outcome}", base_commit=BASE, tokens=tokens)  # type: ignore[arg-type]


def test_add_get_find_and_counts(queue: TaskQueue) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    first = queue.add(new_task("one", project="alpha", external_id="x-1"))
    second = queue.add(new_task("two", project="beta"))
    third = queue.add(new_task("three", project="alpha"))
    assert first.state is TaskState.QUEUED and first.fence == 0 and first.attempts == 0
    assert first.created_at.tzinfo is not None and first.created_at.utcoffset() == timedelta(0)
    assert before < first.created_at <= second.created_at <= third.created_at
    assert queue.get(first.id) == first
    assert queue.get(first.id).external_id == "x-1" and queue.get(second.id).pass_to_pass is None
    assert [t.id for t in queue.find()] == [first.id, second.id, third.id]
    assert [t.id for t in queue.find(project="alpha")] == [first.id, third.id]
    assert [t.id for t in queue.find(limit=2)] == [first.id, second.id]
    assert queue.find(limit=0) == []
    assert queue.find(states=[TaskState.RUNNING]) == []
    queue.cancel(second.id, "not needed")
    assert [t.id for t in queue.find(states=[TaskState.CANCELLED, TaskState.RUNNING])] == [second.id]
    counts = queue.counts()
    assert set(counts) == set(TaskState)
    assert counts[TaskState.QUEUED] == 2 and counts[TaskState.CANCELLED] == 1 and counts[TaskState.PASSED] == 0


def test_unknown_task_is_a_task_error(queue: TaskQueue) -> None:
    for call in (lambda: queue.get(99), lambda: queue.cancel(99, "x"), lambda: queue.retry(99)):
        with pytest.raises(TaskError, match="no task 99"):
            call()
    with pytest.raises(TaskError):
        queue.attempts(99)


def test_claim_takes_highest_priority_then_oldest(queue: TaskQueue) -> None:
    low = queue.add(new_task("low", priority=0))
    high_old = queue.add(new_task("high old", priority=5))
    high_new = queue.add(new_task("high new", priority=5))
    lowest = queue.add(new_task("lowest", priority=-1))
    order = []
    while (claim := queue.claim("w", 60)) is not None:
        order.append(claim.task_id)
    assert order == [high_old.id, high_new.id, low.id, lowest.id]
    assert queue.claim("w", 60) is None


def test_claim_only_from_the_projects_given(queue: TaskQueue) -> None:
    queue.add(new_task("a", project="alpha", priority=9))
    beta = queue.add(new_task("b", project="beta"))
    assert queue.claim("w", 60, projects=[]) is None
    claim = queue.claim("w", 60, projects=["beta", "gamma"])
    assert claim is not None and claim.task_id == beta.id
    assert queue.claim("w", 60, projects=["beta"]) is None


def test_peek_names_what_claim_takes_next_and_changes_nothing(queue: TaskQueue) -> None:
    assert queue.peek() is None
    low = queue.add(new_task("low", project="alpha"))
    high = queue.add(new_task("high", project="beta", priority=3))
    queue.add(new_task("cancelled", project="alpha", priority=9))
    queue.cancel(3, "not needed")
    before = (queue.counts(), queue.get(high.id), queue.attempts(high.id))
    head = queue.peek()
    assert head is not None and head == queue.get(high.id)
    assert (queue.counts(), queue.get(high.id), queue.attempts(high.id)) == before
    assert queue.peek(projects=[]) is None
    only = queue.peek(projects=["alpha", "gamma"])
    assert only is not None and only.id == low.id
    order = []
    while (peeked := queue.peek()) is not None:
        claim = queue.claim("w", 60)
        assert claim is not None and claim.task_id == peeked.id
        order.append(claim.task_id)
    assert order == [high.id, low.id] and queue.claim("w", 60) is None


def test_claim_issues_a_growing_fence_and_an_attempt(queue: TaskQueue) -> None:
    task = queue.add(new_task())
    start = datetime.now(UTC)
    first = queue.claim("w1", 30)
    assert first is not None and first.fence == 1 and first.attempt == 1 and first.worker == "w1"
    assert start + timedelta(seconds=29) < first.lease_expires_at < start + timedelta(seconds=32)
    running = queue.get(task.id)
    assert running.state is TaskState.RUNNING and running.worker == "w1" and running.attempts == 1
    assert queue.release(first, "stopping")
    second = queue.claim("w2", 30)
    assert second is not None and second.fence > first.fence and second.attempt == 2
    attempts = queue.attempts(task.id)
    assert [(a.number, a.fence, a.worker) for a in attempts] == [(1, 1, "w1"), (2, 2, "w2")]
    assert attempts[0].ended_as is TaskState.QUEUED and attempts[0].reason == "stopping"
    assert attempts[1].ended_at is None


def test_fifty_threads_never_claim_the_same_task(queue_spec: QueueSpec, queue: TaskQueue) -> None:
    queue.add_many(new_task(f"t{i}", priority=i % 7) for i in range(150))
    taken: list[list[int]] = [[] for _ in range(50)]
    gate = threading.Barrier(50)

    def work(slot: int) -> None:
        gate.wait()
        taken[slot] = claim_all(queue_spec, f"thread-{slot}")

    threads = [threading.Thread(target=work, args=(slot,)) for slot in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    every = [task_id for ids in taken for task_id in ids]
    assert len(every) == 150 and len(set(every)) == 150
    assert queue.counts()[TaskState.RUNNING] == 150


def test_several_processes_never_claim_the_same_task(queue_spec: QueueSpec, queue: TaskQueue) -> None:
    queue.add_many(new_task(f"t{i}") for i in range(300))
    context = multiprocessing.get_context("spawn")  # each child opens its own handle, nothing inherited
    start, results = context.Barrier(4), context.Queue()
    children = [
        context.Process(target=claim_all_together, args=(queue_spec, f"proc-{n}", start, results)) for n in range(4)
    ]
    for child in children:
        child.start()
    taken = dict(results.get(timeout=120) for _ in children)
    for child in children:
        child.join(30)
        assert child.exitcode == 0
    every = [task_id for ids in taken.values() for task_id in ids]
    assert len(set(every)) == len(every) == 300
    assert sorted(every) == [t.id for t in queue.find()]
    assert sum(1 for ids in taken.values() if ids) >= 2, "the processes did not overlap at all"
    for worker, ids in taken.items():
        assert sorted(task.id for task, _ in queue.held_by(worker)) == sorted(ids)


def _stale_and_current(queue: TaskQueue) -> tuple[Claim, Claim]:
    queue.add(new_task())
    stale = queue.claim("old", 60)
    assert stale is not None and queue.release(stale, "lost its supervisor")
    current = queue.claim("new", 60)
    assert current is not None
    return stale, current


def test_a_stale_claim_is_refused_everywhere_and_marked(queue: TaskQueue) -> None:
    stale, current = _stale_and_current(queue)
    assert queue.renew(stale, 60) is None
    assert queue.mark_judging(stale, RESULT, "task/1", "done") is False
    assert queue.finish(stale, verdict()) is False
    assert queue.release(stale, "late") is False
    task = queue.get(current.task_id)
    assert task.state is TaskState.RUNNING and task.worker == "new" and task.fence == current.fence
    assert task.result_commit is None and task.verdict is None
    old, new = queue.attempts(current.task_id)
    assert old.refused_late is True and old.ended_as is TaskState.QUEUED and old.reason == "lost its supervisor"
    assert new.refused_late is False
    assert queue.held_by("old") == [] and [c for _, c in queue.held_by("new")] == [current]


def test_a_claim_of_a_cancelled_task_is_refused(queue: TaskQueue) -> None:
    task = queue.add(new_task())
    claim = queue.claim("w", 60)
    assert claim is not None
    cancelled = queue.cancel(task.id, "operator changed their mind")
    assert cancelled.state is TaskState.CANCELLED and cancelled.worker is None and cancelled.note
    assert queue.mark_judging(claim, RESULT, "task/1", "done") is False
    assert queue.finish(claim, verdict()) is False
    assert queue.get(task.id).state is TaskState.CANCELLED
    (attempt,) = queue.attempts(task.id)
    assert attempt.ended_as is TaskState.CANCELLED and attempt.refused_late is True


def test_an_expired_lease_cannot_be_renewed(queue: TaskQueue) -> None:
    queue.add(new_task())
    claim = queue.claim("w", 0.4)
    assert claim is not None
    renewed = queue.renew(claim, 0.4)
    assert renewed is not None and renewed.fence == claim.fence and renewed.lease_expires_at > claim.lease_expires_at
    time.sleep(0.6)
    assert queue.renew(renewed, 60) is None
    task = queue.get(claim.task_id)
    assert task.state is TaskState.RUNNING  # still held: who reaps it is the caller's decision
    assert queue.attempts(claim.task_id)[0].refused_late is True


def test_the_whole_way_to_a_verdict(queue: TaskQueue) -> None:
    task = queue.add(new_task())
    claim = queue.claim("w", 60)
    assert claim is not None
    assert queue.mark_judging(claim, RESULT, "ouroboros/task/1", "fixed the bug")
    judging = queue.get(task.id)
    assert judging.state is TaskState.JUDGING and judging.summary == "fixed the bug"
    assert [t.id for t, _ in queue.held_by("w")] == [task.id]
    assert queue.finish(claim, verdict("failed", tokens=1234))
    done = queue.get(task.id)
    assert done.state is TaskState.FAILED and done.worker is None and done.lease_expires_at is None
    assert done.verdict is not None and done.verdict.tokens == 1234 and done.result_commit == RESULT
    (attempt,) = queue.attempts(task.id)
    assert attempt.ended_as is TaskState.FAILED and attempt.tokens == 1234 and attempt.result_commit == RESULT
    assert queue.held_by("w") == []
    assert queue.finish(claim, verdict("passed")) is False  # a second verdict for the same attempt
    assert queue.get(task.id).state is TaskState.FAILED


def test_state_changes_go_through_check_task(queue: TaskQueue) -> None:
    task = queue.add(new_task())
    claim = queue.claim("w", 60)
    assert claim is not None
    with pytest.raises(TaskError, match="running cannot become passed"):
        queue.finish(claim, verdict("passed"))  # not judged yet
    assert queue.mark_judging(claim, RESULT, "b", "s")
    with pytest.raises(TaskError, match="judging cannot become judging"):
        queue.mark_judging(claim, RESULT, "b", "s")
    with pytest.raises(TaskError, match="judging cannot become gave-up"):
        queue.finish(claim, verdict("gave-up"))
    assert queue.get(task.id).state is TaskState.JUDGING
    assert queue.attempts(task.id)[0].refused_late is False  # refused by the table, not by the fence
    assert queue.finish(claim, verdict("infrastructure"))


def test_cancel_and_retry_rules(queue: TaskQueue) -> None:
    task = queue.add(new_task())
    with pytest.raises(TaskError, match="only a finished or cancelled task"):
        queue.retry(task.id)
    assert queue.cancel(task.id, "no").state is TaskState.CANCELLED
    with pytest.raises(TaskError, match="already"):
        queue.cancel(task.id, "again")
    again = queue.retry(task.id)
    assert again.state is TaskState.QUEUED and again.note
    claim = queue.claim("w", 60)
    assert claim is not None
    with pytest.raises(TaskError, match="running"):
        queue.retry(task.id)
    assert queue.mark_judging(claim, RESULT, "b", "s") and queue.finish(claim, verdict("passed"))
    with pytest.raises(TaskError, match="already"):
        queue.cancel(task.id, "too late")
    fresh = queue.retry(task.id)
    assert fresh.state is TaskState.QUEUED and fresh.verdict is None and fresh.result_commit is None
    assert fresh.attempts == 1 and queue.attempts(task.id)[0].ended_as is TaskState.PASSED
    next_claim = queue.claim("w", 60)
    assert next_claim is not None and next_claim.fence == claim.fence + 1


def test_add_many_is_all_or_none_and_refuses_duplicates(queue: TaskQueue) -> None:
    with pytest.raises(TaskError, match="'i-1'.*twice"):
        queue.add_many([new_task(external_id="i-1"), new_task(external_id="i-2"), new_task(external_id="i-1")])
    assert queue.find() == []
    added = queue.add_many(
        [new_task(external_id="i-1"), new_task(), new_task(), new_task(project="other", external_id="i-1")]
    )
    assert len(added) == 4 and [t.id for t in added] == sorted(t.id for t in added)
    with pytest.raises(TaskError, match=f"'i-1'.*already task {added[0].id}"):
        queue.add_many([new_task(external_id="i-9"), new_task(external_id="i-1")])
    with pytest.raises(TaskError, match="already task"):
        queue.add(new_task(external_id="i-1"))
    assert len(queue.find()) == 4 and queue.add_many([]) == []


def test_text_that_cannot_be_stored_is_refused_before_anything_is_queued(queue: TaskQueue) -> None:
    bad = new_task().model_copy(update={"fail_to_pass": ["ok", "lone \udc80 surrogate"]})
    with pytest.raises(TaskError, match="not valid Unicode"):
        queue.add_many([new_task(), bad])
    assert queue.find() == []
    odd = queue.add(new_task("nul\x00 and \x1b[2J escape"))
    assert queue.get(odd.id).title == "nul\x00 and \x1b[2J escape"


def test_held_by_gives_back_the_current_claims(queue: TaskQueue) -> None:
    queue.add_many(new_task(f"t{i}") for i in range(3))
    a1, b1, a2 = (queue.claim(w, 60) for w in ("a", "b", "a"))
    assert a1 and b1 and a2
    a1_renewed = queue.renew(a1, 120)
    held = queue.held_by("a")
    assert [claim for _, claim in held] == [a1_renewed, a2]
    assert all(task.state in HELD and task.worker == "a" for task, _ in held)
