"""The fleet chaos test's parts: nodes made as an operator makes them, the fleet's queue, and the checks.

Each node is a home made with `supervisor init`, its `[fleet]` pointing at one database under its own
name (the password from an environment variable), the sample project added with `supervisor project
add`; `supervisor fleet migrate` runs once. Main gets the cheap gate of the kill test, so genesis
costs a second; the agent is the real one, served by a repeating scenario (fleet_scenario.json).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from supervisor.base.git_ops import MAIN_REF, Git
from supervisor.base.pg.pool import Database
from supervisor.cli.demo import SAMPLE
from supervisor.gate.gatekeeper import Gatekeeper
from supervisor.store.instance import Instance
from supervisor.store.projects import ProjectRegistry
from supervisor.store.tasks.models import VERDICTS, NewTask
from supervisor.store.tasks.pg_queue import PostgresTaskQueue
from supervisor.work.mirror import resolve_commit
from tests.chaos.chaos_instance import CHEAP_GATE, CHEAP_TEST, commit_on_main

SCENARIO = Path(__file__).with_name("fleet_scenario.json")
PASSWORD_ENV = "OUROBOROS_FLEET_CHAOS_PASSWORD"
MODEL = "claude-sonnet-5-5"
FAIL_TO_PASS = ["tests/test_stats.py::test_median_of_even_length"]


@dataclass(frozen=True)
class Timing:
    lease_s: float
    heartbeat_s: float


def supervisor(*args: str, env: dict[str, str] | None = None) -> dict[str, object]:
    """A `supervisor ... --json` command, as an operator runs it; its JSON answer (AssertionError if it fails)."""
    done = subprocess.run(
        [sys.executable, "-m", "supervisor", *args, "--json"], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, f"supervisor {' '.join(args)} failed: {done.stdout}{done.stderr}"
    return json.loads(done.stdout) if done.stdout.strip() else {}


def make_node(home: Path, name: str, *, url: str, results: Path, source: Path, timing: Timing) -> Instance:
    supervisor("init", "--no-gate", "--scenario", str(SCENARIO), str(home))
    instance = Instance.locate(home)
    config = instance.config_path.read_text().replace("[agent]\n", f'[agent]\nstop_grace_s = 1\nmodel = "{MODEL}"\n', 1)
    config += "\n[acceptance]\nenabled = false\n"
    config += (
        f'\n[fleet]\ndatabase = "{url}"\npassword_env = "{PASSWORD_ENV}"\nnode = "{name}"\n'
        f"lease_s = {timing.lease_s}\nheartbeat_s = {timing.heartbeat_s}\npool_min = 1\npool_max = 4\n"
        f'connect_timeout_s = 2\npool_wait_s = 5\nresults_remote = "{results}"\n'
        # Caps far above what the run spends (the agent calls the model without pause): the test is that
        # the fleet's ledger adds up and no cap row is ever passed, not what a cap refuses.
        "\n[fleet.budgets]\nweekly_tokens = 2000000000\nproject_tokens = 2000000000\n"
        "\n[fleet.analysis]\npoll_s = 1\n"  # the tasks are analysed while they wait (`fleet analyse --queued`)
    )
    instance.config_path.write_text(config)
    commit_on_main(Git(instance.repo), {"gate.toml": CHEAP_GATE, "agent/chaos_tests/test_main.py": CHEAP_TEST})
    supervisor("project", "add", SAMPLE, str(source), "--test-deadline", "60", "--home", str(home))
    return instance


def genesis(instance: Instance, engine, image: str) -> Gatekeeper:
    gatekeeper = Gatekeeper(
        instance.repo, engine=engine, journal_root=instance.journal, image=image, instance=instance.instance_id
    )
    gatekeeper.genesis()
    return gatekeeper


@contextmanager
def fleet_queue(url: str, password: str) -> Iterator[PostgresTaskQueue]:
    with Database(url, password=password, application_name="fleet-chaos", min_size=1, max_size=2) as db:
        yield PostgresTaskQueue(db.open())


def queue_tasks(queue: PostgresTaskQueue, first: Instance, source: Path, count: int) -> list[int]:
    """The sample project made known to the fleet and `count` copies of its median task queued."""
    queue.add_project(SAMPLE, str(source), {"language": "python"})
    base = resolve_commit(ProjectRegistry(first.projects).mirror(SAMPLE), "main")
    news = [
        NewTask(project=SAMPLE, title=f"fleet chaos task {n}", base_commit=base, fail_to_pass=FAIL_TO_PASS)
        for n in range(count)
    ]
    return [task.id for task in queue.add_many(news)]


def judged_records(gatekeeper: Gatekeeper) -> list[dict[str, object]]:
    """The `task-judged` details of this node's decision log, each with the node's repository."""
    return [{**r.details, "node": str(gatekeeper.common)} for r in gatekeeper.log.records() if r.kind == "task-judged"]


def fleet_problems(queue: PostgresTaskQueue, nodes: list[Gatekeeper], count: int) -> list[str]:
    """The fleet's task invariants: every task final with one applied verdict, on its last attempt;
    every verdict not applied is marked late on its attempt; nothing lost, nothing held."""
    problems: list[str] = []
    tasks = queue.find()
    if len(tasks) != count:
        problems.append(f"{len(tasks)} tasks in the fleet, not {count}")
    judged = [record for node in nodes for record in judged_records(node)]
    for task in tasks:
        if task.state not in VERDICTS:
            problems.append(f"task {task.id} ended {task.state} (worker {task.worker!r}), not with a verdict")
            continue
        mine = [r for r in judged if r["task"] == task.id]
        applied = [r for r in mine if r.get("applied")]
        if len(applied) != 1:
            problems.append(f"task {task.id}: {len(applied)} applied task-judged records (want 1): {mine}")
            continue
        if applied[0]["attempt"] != task.attempts:
            problems.append(f"task {task.id}: the applied verdict is attempt {applied[0]['attempt']}, not the last")
        if task.verdict is None or applied[0]["outcome"] != task.verdict.outcome:
            problems.append(f"task {task.id}: the queue's verdict differs from the logged one")
        attempts = {a.number: a for a in queue.attempts(task.id)}
        last = attempts.get(task.attempts)
        if last is None or last.ended_as is not task.state or last.refused_late:
            problems.append(f"task {task.id}: its last attempt does not carry the verdict: {last}")
        for number, attempt in attempts.items():
            if number != task.attempts and attempt.ended_as in VERDICTS:
                problems.append(f"task {task.id}: attempt {number} (not the last) ended with {attempt.ended_as}")
            if attempt.ended_at is None:
                problems.append(f"task {task.id}: attempt {number} never ended")
        for record in mine:
            if not record.get("applied"):
                late = attempts.get(int(record["attempt"]))  # type: ignore[call-overload]
                if late is None or not late.refused_late:
                    problems.append(f"task {task.id}: a refused verdict whose attempt is not marked late: {record}")
    return problems


def main_is_gated(gatekeeper: Gatekeeper) -> bool:
    return gatekeeper.git.ref_value(MAIN_REF) in set(gatekeeper.generations().values())


def dump(queue: PostgresTaskQueue) -> str:
    """Where every task stands, for a failure message."""
    lines = [f"counts: { {str(s): n for s, n in queue.counts().items() if n} }"]
    for task in queue.find():
        if task.state not in VERDICTS:
            lines.append(
                f"task {task.id}: {task.state} worker={task.worker} fence={task.fence} attempts={task.attempts}"
            )
    return "\n".join(lines)
