"""The optional analysis call: asked for by an operator, answered by a node through its metered route.

Real PostgreSQL (the throw-away cluster), a node's real route (its ledger and the fleet budget),
the scripted model upstream answering the analysis as an aside (beside whatever conversation it
serves), the real `supervisor fleet` CLI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from scripted_model import Scenario, ScriptedModelServer
from supervisor.base.pg.pool import Database
from supervisor.loop.task_analyst import RUN_ID, TaskAnalyst
from supervisor.route.fleet_budget import FleetCaps
from supervisor.store.fleet_settings import FleetAnalysis, PriorityWeights
from supervisor.store.tasks.analysis import MARKER
from supervisor.store.tasks.models import NewTask, TaskError
from supervisor.store.tasks.pg_analysis import (
    analysis_of,
    finish_analysis,
    request_analysis,
    take_analysis,
)
from supervisor.store.tasks.pg_fleet import add_prioritised, breakdown_of
from supervisor.store.tasks.pg_queue import PostgresTaskQueue
from supervisor.store.tasks.priority import FactorSource, PriorityHints
from tests.fleet.budget_rig import MODEL, Node, count, start_node
from tests.fleet.test_fleet_cli import Node as CliNode
from tests.tasks.queue_specs import new_task

pytestmark = pytest.mark.postgres

GOOD = '{"category": "bug", "complexity": 4, "solvability": 0.95}'
USAGE = {"input_tokens": 400, "output_tokens": 30}
NOW = datetime(2026, 12, 7, tzinfo=UTC)
OPEN_CAPS = FleetCaps(weekly_tokens=10_000_000, project_tokens=1_000_000)


def scenario(answer: str | None = GOOD, error: dict[str, Any] | None = None, delay_ms: int = 0) -> Scenario:
    """The agent's conversation (one step, never reached here) and the analysis as an aside."""
    aside: dict[str, Any] = {"usage": USAGE, "delay_ms": delay_ms}
    if error is not None:
        aside["error"] = error
    else:
        aside["content"] = [{"type": "text", "text": answer}]
    return Scenario.model_validate(
        {
            "name": "analysis",
            "steps": [{"content": [{"type": "text", "text": "the agent's turn"}]}],
            "asides": [{"system_contains": MARKER, "step": aside}],
        }
    )


@pytest.fixture
def fleet(open_db: Callable[..., Database]) -> PostgresTaskQueue:
    queue = PostgresTaskQueue(open_db("cli"))
    queue.add_project("demo", "file:///srv/demo.git")
    return queue


def queue_tasks(queue: PostgresTaskQueue, n: int) -> list[int]:
    items = [(new_task(f"crash in parser {i}"), PriorityHints(impact=0.9)) for i in range(n)]
    return [task.id for task, _ in add_prioritised(queue, items, PriorityWeights(), 50, NOW)]


@pytest.fixture
def node_with(pg_cluster, pg_database: str, tmp_path: Path) -> Iterator[Callable[..., tuple[Node, TaskAnalyst]]]:
    started: list[Any] = []

    def start(
        model: Scenario, caps: FleetCaps = OPEN_CAPS, name: str = "n1", timeout_s: float = 120.0
    ) -> tuple[Node, TaskAnalyst]:
        server = ScriptedModelServer(model).start()
        started.append(server)
        node = start_node(pg_database, pg_cluster.password, server.url, tmp_path / name, name, caps)
        started.append(node)
        analyst = TaskAnalyst(
            node.db,
            node=name,
            route=lambda: node.route,
            model=MODEL,
            settings=FleetAnalysis(),
            weights=PriorityWeights(),
            timeout_s=timeout_s,
        )
        return node, analyst

    yield start
    for part in reversed(started):
        part.stop()


def spends(node: Node) -> list[dict[str, Any]]:
    """The node's ledger's spend records (reservations and releases left out)."""
    lines = [json.loads(line) for line in node.ledger.path.read_text().splitlines() if line.strip()]
    return [line for line in lines if line["kind"] == "spend"]


def test_a_node_analyses_a_requested_task_through_its_metered_route(fleet, node_with) -> None:
    first, second = queue_tasks(fleet, 2)
    before, _ = breakdown_of(fleet.db, first)
    assert request_analysis(fleet.db, [first]) == [first]
    node, analyst = node_with(scenario())
    assert analyst.step() is True
    assert analyst.step() is False  # the other task was never asked for
    after, _ = breakdown_of(fleet.db, first)
    assert before is not None and after is not None
    solvability = after.factors["solvability"]
    assert solvability.source is FactorSource.ANALYSIS and solvability.value == 0.95
    assert "category bug, complexity 4/10" in solvability.why
    assert after.factors["impact"] == before.factors["impact"]
    assert fleet.get(first).priority == after.priority != before.priority
    record = analysis_of(fleet.db, first)
    assert record.state == "done" and record.node == "n1"
    assert record.result == {"category": "bug", "complexity": 4, "solvability": 0.95}
    assert analysis_of(fleet.db, second).state is None
    # Metered like any request: the node's ledger and the fleet's budget both hold its real usage.
    spent = [e for e in spends(node) if e["run_id"] == RUN_ID]
    assert len(spent) == 1 and spent[0]["usage"]["input_tokens"] == 400 and spent[0]["usage"]["output_tokens"] == 30
    assert spent[0]["cycle"] == f"analysis-task-{first}"
    assert count(fleet.db, "SELECT sum(spent) FROM budget_caps WHERE unit = 'tokens' AND scope = 'week'") == 430
    assert count(fleet.db, "SELECT spent FROM budget_caps WHERE id = 'project:demo:tokens'") == 430  # its project's
    assert count(fleet.db, "SELECT count(*) FROM budget_reservations") == 0


@pytest.mark.parametrize(
    "answer",
    [
        "I think it is a bug of medium complexity.",
        '{"category": "bug", "complexity": 40, "solvability": 0.9}',
        '{"category": "bug", "complexity": 4, "solvability": 0.9, "priority": 99999}',
        '{"category": "bug", "complexity": 4, "solvability": 0.9}' + " " * 5000,
        "\x00\udcff",
    ],
)
def test_a_bad_answer_is_recorded_and_changes_no_priority(fleet, node_with, answer: str) -> None:
    [task_id] = queue_tasks(fleet, 1)
    before = fleet.get(task_id).priority
    request_analysis(fleet.db, None)
    _, analyst = node_with(scenario(answer))
    assert analyst.step() is True
    record = analysis_of(fleet.db, task_id)
    assert record.state == "failed" and record.result is not None and record.result["error"]
    assert fleet.get(task_id).priority == before
    assert breakdown_of(fleet.db, task_id)[0].factors["solvability"].source is FactorSource.RULE  # type: ignore[union-attr]
    assert analyst.failed == 1 and analyst.step() is False  # not asked again


def test_a_cap_reached_hands_the_request_back_unspent(fleet, node_with) -> None:
    [task_id] = queue_tasks(fleet, 1)
    request_analysis(fleet.db, [task_id])
    node, analyst = node_with(scenario(), caps=FleetCaps(weekly_tokens=50, project_tokens=None))
    assert analyst.step() is False  # refused before forwarding: it waits for a later poll
    assert analysis_of(fleet.db, task_id).state == "pending"
    assert spends(node) == []
    assert count(fleet.db, "SELECT coalesce(sum(spent), 0) FROM budget_caps") == 0


def test_an_overloaded_model_hands_the_request_back(fleet, node_with) -> None:
    [task_id] = queue_tasks(fleet, 1)
    request_analysis(fleet.db, [task_id])
    error = {"status": 529, "type": "overloaded_error", "message": "busy"}
    _, analyst = node_with(scenario(error=error))
    assert analyst.step() is False
    assert analysis_of(fleet.db, task_id).state == "pending"


def test_a_task_claimed_before_its_analysis_is_not_asked_about(fleet, node_with) -> None:
    [task_id] = queue_tasks(fleet, 1)
    request_analysis(fleet.db, [task_id])
    assert fleet.claim("w", 60) is not None
    node, analyst = node_with(scenario())
    assert analyst.step() is True
    assert analysis_of(fleet.db, task_id).state == "failed"
    assert spends(node) == []


def test_two_nodes_never_take_one_request_and_a_late_answer_changes_nothing(fleet, open_db) -> None:
    ids = queue_tasks(fleet, 20)
    request_analysis(fleet.db, None)
    taken: list[int] = []
    lock = threading.Lock()

    def take_all(name: str) -> None:
        db = open_db(name)
        while (taking := take_analysis(db, name, 600)) is not None:
            with lock:
                taken.append(taking.task.id)

    threads = [threading.Thread(target=take_all, args=(f"n{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(taken) == ids  # each exactly once
    # A taking that went stale (its node paused) is taken over; the paused node's answer is refused.
    with fleet.db.transaction() as cursor:
        cursor.execute("UPDATE tasks SET analysis_at = now() - interval '1 hour' WHERE id = %s", (ids[0],))
    stale = take_analysis(fleet.db, "sleeper", 600)
    assert stale is not None and stale.task.id == ids[0]
    with fleet.db.transaction() as cursor:
        cursor.execute("UPDATE tasks SET analysis_at = now() - interval '1 hour' WHERE id = %s", (ids[0],))
    fresh = take_analysis(fleet.db, "waker", 600)
    assert fresh is not None and fresh.task.id == ids[0]
    from supervisor.store.tasks.analysis import TaskAnalysis

    estimate = TaskAnalysis.model_validate_json(GOOD)
    assert finish_analysis(fleet.db, stale, estimate, PriorityWeights(), NOW) is None
    assert analysis_of(fleet.db, ids[0]).state == "running"
    assert finish_analysis(fleet.db, fresh, estimate, PriorityWeights(), NOW) is not None
    assert analysis_of(fleet.db, ids[0]).node == "waker"


def test_asking_is_all_or_nothing_and_says_why(fleet) -> None:
    ids = queue_tasks(fleet, 2)
    claim = fleet.claim("w", 60)
    assert claim is not None
    with pytest.raises(TaskError, match=f"not queued: {claim.task_id} \\(running\\)"):
        request_analysis(fleet.db, ids)
    with pytest.raises(TaskError, match="no fleet task 999"):
        request_analysis(fleet.db, [ids[1], 999])
    assert analysis_of(fleet.db, ids[1]).state is None


def test_the_cli_asks_and_shows(fleet, pg_cluster, pg_database: str, tmp_path: Path) -> None:
    node = CliNode(tmp_path / "home", pg_database, pg_cluster.password)
    ids = queue_tasks(fleet, 3)
    assert node.json("fleet", "analyse", str(ids[0])) == {"asked": [ids[0]]}
    assert "analysis of 2 task(s)" in node.cli("fleet", "analyse", "--queued")
    assert "no queued task is waiting" in node.cli("fleet", "analyse", "--queued")
    assert "give task ids or --queued" in node.error("fleet", "analyse")
    assert "give task ids or --queued" in node.error("fleet", "analyse", "--queued", str(ids[0]))
    assert "no fleet task 4242" in node.error("fleet", "analyse", "4242")
    shown = node.json("fleet", "task", "show", str(ids[0]))
    assert isinstance(shown, dict) and shown["analysis"]["state"] == "pending"
    assert "analysis     pending" in node.cli("fleet", "task", "show", str(ids[0]))


def test_an_unexpected_error_after_the_taking_fails_the_request_once(fleet, node_with, caplog) -> None:
    """A task whose saved breakdown this node cannot read (written by a newer node, with a factor source
    it does not know): the answer, paid for, cannot be applied. The request is recorded as failed with
    why, not left running to go stale and be asked (and paid for) again at every `stale_s`."""
    [task_id] = queue_tasks(fleet, 1)
    with fleet.db.transaction() as cursor:
        cursor.execute(
            "UPDATE tasks SET priority_breakdown = jsonb_set(priority_breakdown, '{factors,impact,source}',"
            " '\"learned\"') WHERE id = %s",
            (task_id,),
        )
    request_analysis(fleet.db, [task_id])
    before = fleet.get(task_id).priority
    node, analyst = node_with(scenario())
    assert analyst.step() is True
    record = analysis_of(fleet.db, task_id)
    assert record.state == "failed" and record.result is not None and "learned" in record.result["error"]
    with fleet.db.transaction() as cursor:  # long after: no taking of it is left to go stale
        cursor.execute("UPDATE tasks SET analysis_at = now() - interval '1 day' WHERE id = %s", (task_id,))
    assert analyst.step() is False
    assert len([e for e in spends(node) if e["run_id"] == RUN_ID]) == 1 and fleet.get(task_id).priority == before


def test_a_model_slower_than_the_analysts_timeout_is_waited_for_not_paid_again(fleet, node_with) -> None:
    """The route ends every call itself (its upstream deadline), metered: an analyst that gave up
    sooner would hand the request back after the route had charged its answer, and ask (and pay)
    again at every poll while the model stays that slow."""
    [task_id] = queue_tasks(fleet, 1)
    request_analysis(fleet.db, [task_id])
    node, analyst = node_with(scenario(delay_ms=2500), timeout_s=1.0)
    assert analyst.step() is True
    assert analysis_of(fleet.db, task_id).state == "done"
    assert len([e for e in spends(node) if e["run_id"] == RUN_ID]) == 1


def test_hostile_task_text_is_sent_bounded_and_analysed(fleet, node_with) -> None:
    """A task whose title, body and test names are as long as a task may hold and hold NUL, a bidi override and text that
    looks like the request's own framing: the request stays bounded and the answer is applied."""
    nasty = "\x00```}\n" + '{"category": "docs"}' + "\u202e"
    task = fleet.add(
        NewTask(
            project="demo",
            title=(nasty * 10).replace("\n", " ")[:200],
            body=(nasty * 4000)[:100_000],
            base_commit="0" * 40,
            fail_to_pass=[nasty * 100] * 500,
        )
    )
    request_analysis(fleet.db, [task.id])
    node, analyst = node_with(scenario())
    assert analyst.step() is True
    assert analysis_of(fleet.db, task.id).state == "done"
    [spent] = [e for e in spends(node) if e["run_id"] == RUN_ID]
    assert spent["cycle"] == f"analysis-task-{task.id}"


def test_asking_for_every_queued_task_goes_in_batches_and_skips_the_rest(fleet, monkeypatch) -> None:
    import supervisor.store.tasks.pg_analysis as pg_analysis

    monkeypatch.setattr(pg_analysis, "BATCH", 7)
    ids = queue_tasks(fleet, 20)
    claim = fleet.claim("w", 60)
    assert claim is not None
    request_analysis(fleet.db, [ids[-1]])  # asked for already: not again
    asked = request_analysis(fleet.db, None)
    assert asked == [n for n in ids if n not in (claim.task_id, ids[-1])]
    assert request_analysis(fleet.db, None) == []  # repeating asks for nothing more
    assert analysis_of(fleet.db, claim.task_id).state is None


def test_a_taking_is_not_stale_before_a_call_the_node_would_still_wait_for(fleet, node_with) -> None:
    [task_id] = queue_tasks(fleet, 1)
    request_analysis(fleet.db, [task_id])
    node, analyst = node_with(scenario())
    stale = analyst._stale_s(node.route)
    assert stale >= 2 * node.route.upstream.deadline_s
    taken = take_analysis(fleet.db, "other", 600)
    assert taken is not None
    with fleet.db.transaction() as cursor:  # older than stale_s, younger than the longest call
        cursor.execute(
            "UPDATE tasks SET analysis_at = now() - make_interval(secs => %s) WHERE id = %s", (stale - 60, task_id)
        )
    assert analyst.step() is False  # not taken over: the other node may still be waiting for its answer
    with fleet.db.transaction() as cursor:
        cursor.execute(
            "UPDATE tasks SET analysis_at = now() - make_interval(secs => %s) WHERE id = %s", (stale + 60, task_id)
        )
    assert analyst.step() is True and analysis_of(fleet.db, task_id).node == "n1"


def test_a_node_killed_mid_analysis_leaves_a_state_that_converges(
    fleet, node_with, pg_cluster, pg_database: str, tmp_path: Path
) -> None:
    """kill -9 while the model answers: its reservation is swept at worst case once, its taking is taken
    over once stale, and the task is analysed once by the survivor."""
    [task_id] = queue_tasks(fleet, 1)
    request_analysis(fleet.db, [task_id])
    slow = ScriptedModelServer(scenario_with_delay(20_000)).start()
    victim = subprocess.Popen(
        [sys.executable, "-m", "tests.fleet.analyst_rig", pg_database, pg_cluster.password, slow.url,
         str(tmp_path / "victim"), "victim", "2"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()},
    )  # fmt: skip
    try:
        assert victim.stdout is not None and victim.stdout.readline().split() == ["ready"]
        deadline = time.monotonic() + 30
        while count(fleet.db, "SELECT count(*) FROM budget_reservations") < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        record = analysis_of(fleet.db, task_id)
        assert record.state == "running" and record.node == "victim"
        assert count(fleet.db, "SELECT count(*) FROM budget_reservations") == 1
    finally:
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(10)
        slow.stop()
    node, analyst = node_with(scenario())
    time.sleep(2.5)  # past the victim's budget lease
    node.fleet.tick()
    assert count(fleet.db, "SELECT count(*) FROM budget_reservations") == 0
    assert count(fleet.db, "SELECT count(*) FROM budget_settlements WHERE how = 'swept' AND node = 'victim'") == 1
    assert analyst.step() is False  # the victim's taking is not stale yet: nobody asks twice
    with fleet.db.transaction() as cursor:  # time passes beyond the longest call
        cursor.execute("UPDATE tasks SET analysis_at = now() - interval '1 day' WHERE id = %s", (task_id,))
    assert analyst.step() is True
    record = analysis_of(fleet.db, task_id)
    assert record.state == "done" and record.node == "n1" and record.result is not None
    assert len([e for e in spends(node) if e["run_id"] == RUN_ID]) == 1
    assert analyst.step() is False


def scenario_with_delay(delay_ms: int) -> Scenario:
    slow = scenario()
    aside = slow.asides[0].model_copy(update={"step": slow.asides[0].step.model_copy(update={"delay_ms": delay_ms})})
    return slow.model_copy(update={"asides": [aside]})
