"""The fleet under chaos: nodes killed and restarted, PostgreSQL restarted, a node paused past its lease.

Real PostgreSQL (a throw-away cluster), real Docker, the real agent served by the scripted model, and
NODES supervisors (`supervisor start`) on this machine, each its own home, all on one fleet queue of
TASKS tasks. Seeded (printed; replay with FLEET_CHAOS_SEED): kill -9 of a random node at moments
spread over the run (each started again a moment later), one restart of PostgreSQL, and one node
stopped (SIGSTOP) while it works on a task until another node has claimed that task, then continued
(SIGCONT) so it tries to go on with it. The agent reports every task done (GOAL STATUS: complete);
any verdict will do. At the end: every task has exactly one applied verdict, on its last attempt;
every verdict that was refused (an expired lease) is marked late on its attempt; the paused node's
attempt is marked late; nothing is lost or held; each node's ledger is what its model served
(tests/chaos/ledger_audit.py), the fleet's ledger equals the nodes' ledgers and no cap row was ever
above its cap (tests/chaos/fleet_ledger.py); every node's decision log verifies, its main is a gated
generation and none of its containers is left.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from scripted_model.served import SERVED_LOG_ENV
from supervisor.base.pg.errors import DatabaseError
from supervisor.cli.demo import sample_repository
from supervisor.store.instance import Instance
from supervisor.store.tasks.models import VERDICTS, TaskState
from supervisor.store.tasks.pg_analysis import analysis_of, request_analysis
from supervisor.store.tasks.pg_fleet import breakdown_of
from supervisor.store.tasks.pg_queue import PostgresTaskQueue
from tests.chaos.chaos_instance import ledger_audit
from tests.chaos.fleet_ledger import audit_fleet_ledger, cap_overshoot
from tests.chaos.fleet_nodes import (
    PASSWORD_ENV,
    Timing,
    dump,
    fleet_problems,
    fleet_queue,
    genesis,
    main_is_gated,
    make_node,
    queue_tasks,
    supervisor,
)
from tests.system.conftest import SupervisorProcess, containers_of

pytestmark = [pytest.mark.docker, pytest.mark.postgres]
NODES = int(os.environ.get("FLEET_CHAOS_NODES", "4"))
TASKS = int(os.environ.get("FLEET_CHAOS_TASKS", "40"))
KILLS = int(os.environ.get("FLEET_CHAOS_KILLS", "6"))
LIMIT_S = float(os.environ.get("FLEET_CHAOS_LIMIT_S", "480"))
TIMING = Timing(lease_s=20, heartbeat_s=5)
RESTART_S = 5.0  # packaging/systemd: RestartSec=5


@dataclass
class Pause:
    """The node stopped past its lease: which, on which task (and fence), and when it was continued."""

    node: str
    task: int
    fence: int
    attempt: int
    stopped_at: float
    continued_at: float | None = None


@dataclass
class FleetRun:
    rng: random.Random
    nodes: dict[str, Instance]
    queue: PostgresTaskQueue
    cluster: object
    started: float = field(default_factory=time.monotonic)
    processes: dict[str, SupervisorProcess] = field(default_factory=dict)
    restarts: dict[str, float] = field(default_factory=dict)  # node -> when to start it again
    events: list[str] = field(default_factory=list)
    pause: Pause | None = None
    pg_restarted: bool = False
    kills: dict[str, int] = field(default_factory=dict)  # node -> kill -9 it took
    overshoot: list[str] = field(default_factory=list)  # cap rows seen above their cap during the run

    def start(self, name: str) -> None:
        os.environ[SERVED_LOG_ENV] = str(served_log(self.nodes[name]))  # each node's model lists its answers
        self.processes[name] = SupervisorProcess(self.nodes[name])

    def note(self, event: str) -> None:
        self.events.append(f"{time.monotonic() - self.started:6.1f}s {event}")
        print("fleet chaos:", self.events[-1], flush=True)

    def finals(self) -> int | None:
        try:
            counts = self.queue.counts()
        except DatabaseError:
            return None  # PostgreSQL is restarting
        return sum(n for state, n in counts.items() if state in VERDICTS)

    def check_alive(self) -> None:
        """A node never exits by itself, except a start refused while PostgreSQL was down (docs/fleet.md):
        started again after RESTART_S, as its systemd unit does (Restart=on-failure)."""
        for name, process in self.processes.items():
            if name in self.restarts or process.process.poll() is None:
                continue
            output = self.tail(name)
            if process.process.returncode != 0 and "cannot reach the fleet database" in output:
                self.restarts[name] = time.monotonic() + RESTART_S
                self.note(f"{name} refused to start without the database; started again in {RESTART_S:g} s")
                continue
            raise AssertionError(f"{name} exited by itself ({process.process.returncode}):\n{output}")

    def tail(self, name: str) -> str:
        process = self.processes[name]
        while not process.lines.empty():
            process.seen.append(process.lines.get_nowait())
        return "\n".join(process.seen[-40:])

    def state(self) -> str:
        try:
            queue = dump(self.queue)
        except DatabaseError as exc:
            queue = f"(the fleet database does not answer: {exc})"
        tails = "\n".join(f"--- {name}\n{self.tail(name)}" for name in self.processes)
        return "events:\n" + "\n".join(self.events) + f"\n{queue}\n{tails}"

    # -- the chaos -----------------------------------------------------------------------------

    def kill_one(self) -> None:
        alive = [n for n in sorted(self.processes) if n not in self.restarts and n != self.sparing()]
        if not alive:
            return
        name = self.rng.choice(alive)
        self.processes[name].kill9()
        self.kills[name] = self.kills.get(name, 0) + 1
        self.restarts[name] = time.monotonic() + self.rng.uniform(0.0, 4.0)
        self.note(f"kill -9 {name}: {self.tail(name).splitlines()[-1:]}")

    def sparing(self) -> str | None:
        """The paused node is not killed while stopped, nor until it has had time to try to go on."""
        pause = self.pause
        if pause is None or (pause.continued_at and time.monotonic() - pause.continued_at > 3 * TIMING.heartbeat_s):
            return None
        return pause.node

    def restart_due(self) -> None:
        for name, when in list(self.restarts.items()):
            if time.monotonic() >= when:
                del self.restarts[name]
                self.start(name)
                self.note(f"started {name} again")

    def restart_postgres(self) -> None:
        self.note("stopping PostgreSQL")
        self.cluster.stop_server()  # type: ignore[attr-defined]
        time.sleep(self.rng.uniform(1.0, 6.0))
        self.cluster.start_server()  # type: ignore[attr-defined]
        self.pg_restarted = True
        self.note("PostgreSQL started again")

    def try_pause(self) -> None:
        """SIGSTOP a node that holds a running task (none may: then later)."""
        try:
            running = self.queue.find(states=[TaskState.RUNNING])
        except DatabaseError:
            return
        held = [t for t in running if t.worker in self.processes and t.worker not in self.restarts]
        if not held:
            return
        task = self.rng.choice(held)
        assert task.worker is not None
        self.processes[task.worker].process.send_signal(signal.SIGSTOP)
        self.pause = Pause(task.worker, task.id, task.fence, task.attempts, time.monotonic())
        self.note(f"SIGSTOP {task.worker} holding task {task.id} (fence {task.fence})")

    def continue_when_taken(self) -> None:
        pause = self.pause
        assert pause is not None and pause.continued_at is None
        try:
            now = self.queue.get(pause.task)
        except DatabaseError:
            return
        if now.fence > pause.fence:
            self.processes[pause.node].process.send_signal(signal.SIGCONT)
            pause.continued_at = time.monotonic()
            self.note(f"SIGCONT {pause.node}: task {pause.task} is {now.state} by {now.worker} (fence {now.fence})")
        elif time.monotonic() - pause.stopped_at > TIMING.lease_s + 120:
            raise AssertionError(f"nobody took task {pause.task} from the stopped {pause.node}\n{self.state()}")

    def run(self) -> None:
        rng = self.rng
        kills = sorted(rng.randint(1, TASKS * 3 // 4) for _ in range(KILLS))
        pg_at = rng.randint(TASKS // 5, TASKS // 2)
        pause_at = rng.randint(1, TASKS // 6)
        kill_after = time.monotonic() + rng.uniform(0.0, 3.0)
        self.note(f"kills after {kills} verdicts; PostgreSQL restart after {pg_at}; a pause after {pause_at}")
        for name in self.nodes:
            self.start(name)
        deadline = self.started + LIMIT_S
        seen = -1
        while True:
            if time.monotonic() > deadline:
                raise AssertionError(f"time limit of {LIMIT_S:g} s reached before every task was final\n{self.state()}")
            time.sleep(0.25)
            self.check_alive()
            self.restart_due()
            finals = self.finals()
            if finals is None:
                continue
            try:
                self.overshoot += cap_overshoot(self.queue.db)
            except DatabaseError:
                continue
            if finals != seen:
                seen = finals
                print(f"fleet chaos: {time.monotonic() - self.started:6.1f}s {finals} final", flush=True)
            if kills and finals >= kills[0] and time.monotonic() >= kill_after:
                kills.pop(0)
                self.kill_one()
                kill_after = time.monotonic() + rng.uniform(0.0, 3.0)
            if not self.pg_restarted and finals >= pg_at:
                self.restart_postgres()
            if self.pause is None and finals >= pause_at:
                self.try_pause()
            elif self.pause is not None and self.pause.continued_at is None:
                self.continue_when_taken()
            settled = self.pause is not None and self.pause.continued_at is not None and self.sparing() is None
            if finals == TASKS and not kills and self.pg_restarted and settled and not self.restarts:
                self.note(f"every task is final after {time.monotonic() - self.started:.0f} s")
                return


def test_fleet_of_nodes_under_kills_a_database_restart_and_a_pause_keeps_every_invariant(
    tmp_path, docker_engine, agent_image, pg_cluster, monkeypatch
):
    seed = int(os.environ.get("FLEET_CHAOS_SEED") or random.SystemRandom().randrange(1 << 32))
    print(f"fleet chaos seed {seed} (replay with FLEET_CHAOS_SEED={seed})")
    monkeypatch.setenv(PASSWORD_ENV, pg_cluster.password)
    monkeypatch.setenv(SERVED_LOG_ENV, "")  # set for each node as it starts; restored after the test
    url = pg_cluster.url(pg_cluster.create_database(pg_cluster.fresh_name()))
    source = sample_repository(tmp_path / "sample")
    results = tmp_path / "results.git"
    subprocess.run(["git", "init", "-q", "--bare", str(results)], check=True)
    nodes = {
        f"node-{i}": make_node(
            tmp_path / f"node{i}", f"node-{i}", url=url, results=results, source=source, timing=TIMING
        )
        for i in range(NODES)
    }
    gatekeepers = [genesis(instance, docker_engine, agent_image) for instance in nodes.values()]
    supervisor("fleet", "migrate", "--home", str(nodes["node-0"].home))
    run: FleetRun | None = None
    try:
        with fleet_queue(url, pg_cluster.password) as queue:
            queue_tasks(queue, nodes["node-0"], source, TASKS)
            assert len(request_analysis(queue.db, None)) == TASKS  # each node's analyst answers some, metered
            run = FleetRun(random.Random(seed), nodes, queue, pg_cluster)
            run.run()
            for name, process in run.processes.items():
                assert process.terminate() == 0, f"{name} did not stop cleanly:\n{run.tail(name)}"
            problems = fleet_problems(queue, gatekeepers, TASKS)
            assert not problems, f"fleet invariants broken (seed {seed}):\n" + "\n".join(problems) + run.state()
            pause = run.pause
            assert pause is not None
            late = [a for a in queue.attempts(pause.task) if a.number == pause.attempt]
            assert late and late[0].refused_late, f"the paused node's attempt is not marked late: {late} (seed {seed})"
            shared = _shared_results(results)
            for task in queue.find():
                if task.result_branch:
                    assert shared.get(task.result_branch) == task.result_commit, f"task {task.id} not shared"
            counts = {str(s): n for s, n in queue.counts().items() if n}
            for name, instance in nodes.items():
                audit = ledger_audit(instance, served_log(instance), kills=run.kills.get(name, 0))
                assert audit.ok, f"{name}'s ledger is not what its model served (seed {seed}): {audit.problems}"
            fleet = audit_fleet_ledger(queue.db, nodes, kills=sum(run.kills.values()))
            assert not fleet.problems, f"the fleet's ledger does not add up (seed {seed}): {fleet.problems}"
            assert not run.overshoot, f"caps passed during the run (seed {seed}): {run.overshoot}"
            assert fleet.settled.get("spent", 0) >= TASKS, "the fleet's ledger hardly settled anything"
            analysed = analyses_done(queue)
            assert analysed, f"no node analysed a waiting task (seed {seed})"
    finally:
        if run is not None:
            for process in run.processes.values():
                if process.process.poll() is None:
                    process.process.send_signal(signal.SIGCONT)
                    process.kill9()
        for instance in nodes.values():
            docker_engine.reconcile(instance=instance.instance_id)
    for instance, gatekeeper in zip(nodes.values(), gatekeepers, strict=True):
        assert supervisor("verify-log", "--home", str(instance.home))["ok"] is True
        assert main_is_gated(gatekeeper), f"main of {instance.home} is not a gated generation"
        assert containers_of(docker_engine, instance) == [], f"containers left by {instance.home}"
    print(f"fleet chaos: {counts} in {time.monotonic() - run.started:.0f} s (seed {seed})")
    print(f"fleet chaos: the fleet's ledger settled {fleet.settled}, {fleet.tokens} tokens")
    print(f"fleet chaos: {len(analysed)} of {TASKS} tasks analysed by the nodes while they waited")


def analyses_done(queue: PostgresTaskQueue) -> list[int]:
    """Tasks whose analysis was applied; each must carry the analysed solvability in its breakdown."""
    done = []
    for task in queue.find():
        record = analysis_of(queue.db, task.id)
        if record.state == "done":
            breakdown, _ = breakdown_of(queue.db, task.id)
            assert breakdown is not None and breakdown.factors["solvability"].source.value == "analysis", task.id
            done.append(task.id)
    return done


def served_log(instance: Instance) -> Path:
    """What this node's scripted model served, outside its home (the supervisor cannot touch it)."""
    return instance.home.parent / f"served-{instance.home.name}.jsonl"


def _shared_results(results) -> dict[str, str]:
    listed = subprocess.run(
        ["git", "--git-dir", str(results), "for-each-ref", "--format=%(refname) %(objectname)"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return dict(line.split(" ", 1) for line in listed.splitlines())
