"""Random sequences of queue calls against a model of the contract: states, fences and refusals agree."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor.store.tasks.models import ALLOWED, FINAL, HELD, Claim, TaskError, TaskState, TaskVerdict
from supervisor.store.tasks.queue import TaskQueue
from tests.tasks.queue_specs import BASE, new_task

OUTCOMES = ["passed", "failed", "gave-up", "infrastructure"]
# (kind, a small number: priority or which claim or task, worker, outcome); kinds weighted so stale
# claims of tasks held again come up in most sequences.
KINDS = ["add", "add", "claim", "claim", "release", "release", "judge", "judge", "finish", "renew", "cancel", "retry"]
OPS = st.tuples(
    st.sampled_from(KINDS),
    st.integers(min_value=0, max_value=4),
    st.sampled_from(["a", "b"]),
    st.sampled_from(OUTCOMES),
)
Op = tuple[str, int, str, str]


@dataclass
class Modelled:
    state: TaskState
    fence: int
    priority: int


class Model:
    """What the contract says the queue must hold after each call."""

    def __init__(self) -> None:
        self.tasks: dict[int, Modelled] = {}

    def next_claimed(self) -> int | None:
        queued = [(-t.priority, task_id) for task_id, t in self.tasks.items() if t.state is TaskState.QUEUED]
        return min(queued)[1] if queued else None

    def holds(self, claim: Claim) -> bool:
        task = self.tasks[claim.task_id]
        return task.state in HELD and task.fence == claim.fence


def _claim_call(queue: TaskQueue, model: Model, claim: Claim, op: Op) -> None:
    """One call that takes a claim: refused when stale, TaskError when the table forbids, else applied."""
    kind = op[0]
    targets = {"renew": None, "judge": TaskState.JUDGING, "release": TaskState.QUEUED}
    target = TaskState(op[3]) if kind == "finish" else targets[kind]
    task = model.tasks[claim.task_id]
    held = model.holds(claim)
    forbidden = held and target is not None and target not in ALLOWED[task.state]

    def call() -> object:
        if kind == "renew":
            return queue.renew(claim, 600)
        if kind == "judge":
            return queue.mark_judging(claim, "c" * 40, "branch", "summary")
        if kind == "release":
            return queue.release(claim, "stop")
        verdict = TaskVerdict(outcome=op[3], reason="r", base_commit=BASE)  # type: ignore[arg-type]
        return queue.finish(claim, verdict)

    if forbidden:
        with pytest.raises(TaskError):
            call()
        return
    result = call()
    if not held:
        assert result in (False, None)
        assert queue.attempts(claim.task_id)[claim.attempt - 1].refused_late
        return
    assert result not in (False, None)
    if target is not None:
        task.state = target


def _step(queue: TaskQueue, model: Model, claims: list[Claim], op: Op) -> None:
    kind = op[0]
    if kind == "add":
        task = queue.add(new_task(priority=op[1] - 2))
        model.tasks[task.id] = Modelled(TaskState.QUEUED, 0, task.priority)
    elif kind == "claim":
        expected = model.next_claimed()
        claim = queue.claim(op[2], 600)
        assert (claim.task_id if claim else None) == expected
        if claim is not None:
            task = model.tasks[claim.task_id]
            assert claim.fence > task.fence
            task.state, task.fence = TaskState.RUNNING, claim.fence
            claims.append(claim)
    elif kind in ("cancel", "retry"):
        ids = sorted(model.tasks)
        if not ids:
            return
        task_id = ids[op[1] % len(ids)]
        task = model.tasks[task_id]
        allowed = task.state not in FINAL if kind == "cancel" else task.state in FINAL
        if not allowed:
            with pytest.raises(TaskError):
                queue.cancel(task_id, "x") if kind == "cancel" else queue.retry(task_id)
            return
        done = queue.cancel(task_id, "x") if kind == "cancel" else queue.retry(task_id)
        task.state = done.state
        assert done.state is (TaskState.CANCELLED if kind == "cancel" else TaskState.QUEUED)
    elif claims:
        _claim_call(queue, model, claims[op[1] % len(claims)], op)


def _agrees(queue: TaskQueue, model: Model) -> None:
    stored = {task.id: task for task in queue.find()}
    assert set(stored) == set(model.tasks)
    for task_id, expected in model.tasks.items():
        task = stored[task_id]
        assert (task.state, task.fence) == (expected.state, expected.fence), task_id
        assert (task.worker is not None) == (task.state in HELD)
    counts = queue.counts()
    assert sum(counts.values()) == len(model.tasks)
    for state in TaskState:
        assert counts[state] == sum(1 for t in model.tasks.values() if t.state is state)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(OPS, min_size=4, max_size=40))
def test_random_calls_keep_the_contract(fresh_queue: Callable[[], TaskQueue], ops: list[Op]) -> None:
    queue = fresh_queue()
    model = Model()
    claims: list[Claim] = []
    try:
        for op in ops:
            _step(queue, model, claims, op)
            _agrees(queue, model)
    finally:
        queue.close()
