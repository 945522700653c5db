"""`Supervisor.apply`, the one place a decision is carried out, given each typed decision.

Each test runs a real instance on the fake engine and applies one decision on the loop's own thread
(through `stop_when`, which the loop calls after every event), then looks at what changed: the
agent's container, the published state, the decision log, the journal.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from sandbox.fake import FakeEngine
from supervisor.loop.decisions import (
    Adopt,
    Continue,
    Decision,
    GaveUpError,
    GiveUp,
    Idle,
    PauseForDisk,
    Restart,
    RollBack,
    Start,
)
from supervisor.loop.event_loop import Supervisor
from supervisor.store.decision_kinds import DecisionKind
from supervisor.store.states import StateError, SupervisorState
from supervisor.store.status_file import StatusFile
from tests.supervisor.fakes import fake_instance, gatekeeper_of, proposing_agent


@dataclass
class Seen:
    container: str | None
    state: SupervisorState
    generation: int | None
    published: str | None  # the container status.json names


@dataclass
class Applier:
    """A `stop_when` that applies `decision` once `ready` holds, then ends the run."""

    decision: Callable[[Supervisor], Decision]
    ready: Callable[[Supervisor], bool] = lambda s: s.agent is not None
    before: Seen | None = None
    after: Seen | None = None
    files: list[str] = field(default_factory=list)

    def __call__(self, supervisor: Supervisor) -> bool:
        if self.after is not None:
            return True
        if not self.ready(supervisor) or supervisor.status.state is not SupervisorState.RUNNING:
            return False
        self.before = seen(supervisor)
        supervisor.apply(self.decision(supervisor))
        self.after = seen(supervisor)
        self.files.append(supervisor.instance.status_file.read_text())
        return True


def seen(supervisor: Supervisor) -> Seen:
    agent = supervisor.agent
    status = supervisor.status
    return Seen(agent.container.id if agent else None, status.state, status.generation, status.agent_container)


def run(tmp_path, decision: Callable[[Supervisor], Decision], engine: FakeEngine | None = None, **kwargs):
    engine = engine or FakeEngine()
    instance = fake_instance(tmp_path / "home", engine)
    applier = Applier(decision, **kwargs)
    supervisor = Supervisor(instance, engine, "fake-image", stop_when=applier)
    assert supervisor.run() == 0
    assert applier.before is not None and applier.after is not None
    return supervisor, applier, gatekeeper_of(instance, engine)


def starts(gatekeeper) -> int:
    return sum(r.kind == DecisionKind.AGENT_STARTED for r in gatekeeper.log.records())


def test_continue_changes_nothing(tmp_path):
    _, applier, gk = run(tmp_path, lambda s: Continue())
    assert applier.after == applier.before and starts(gk) == 1


def test_start_while_the_agent_runs_starts_no_second_one(tmp_path):
    _, applier, gk = run(tmp_path, lambda s: Start("again"))
    assert applier.after == applier.before and starts(gk) == 1


def test_restart_replaces_the_container_and_times_the_restart(tmp_path):
    supervisor, applier, gk = run(tmp_path, lambda s: Restart("a test", since=s.lifecycle.last_start_at))
    assert applier.after.container not in (None, applier.before.container)
    assert applier.after.state is SupervisorState.RUNNING and starts(gk) == 2
    assert [r.details["reason"] for r in gk.log.records() if r.kind == DecisionKind.AGENT_STARTED][-1] == "a test"
    assert len(supervisor.restart_latencies) == 1 and supervisor.restart_latencies[0] >= 0


def test_a_delayed_restart_that_a_stop_cuts_short_leaves_the_agent_alone(tmp_path):
    def stop_then_restart(supervisor: Supervisor) -> Decision:
        supervisor.request_stop()
        return Restart("crash", keep_probation=True, delay_s=30.0)

    _, applier, gk = run(tmp_path, stop_then_restart)
    assert applier.after == applier.before and starts(gk) == 1


def test_adopt_watches_the_run_again_and_publishes_its_container(tmp_path):
    def adopt(supervisor: Supervisor) -> Decision:
        supervisor.status.agent_container = None  # as an exit the engine caused leaves it
        return Adopt(supervisor.agent)

    _, applier, gk = run(tmp_path, adopt)
    assert applier.after == applier.before and applier.after.published == applier.after.container
    assert starts(gk) == 1


def test_idle_publishes_idle(tmp_path):
    _, applier, _ = run(tmp_path, lambda s: Idle())
    assert applier.after.state is SupervisorState.IDLE and '"idle"' in applier.files[0]


def test_pause_for_disk_publishes_the_pause(tmp_path):
    _, applier, _ = run(tmp_path, lambda s: PauseForDisk(OSError(errno.ENOSPC, "No space left on device")))
    assert applier.after.state is SupervisorState.DISK_FULL
    assert '"paused: disk full"' in applier.files[0] and "No space left" in applier.files[0]


def test_roll_back_moves_main_back_and_restarts_on_it(tmp_path):
    written: list[str] = []
    engine = FakeEngine(agent=proposing_agent(written))
    supervisor, applier, gk = run(
        tmp_path,
        lambda s: RollBack(s.status.generation),
        engine=engine,
        ready=lambda s: s.verdict_count >= 1 and s.agent is not None,
    )
    assert applier.before.generation == 1 and applier.after.generation == 0
    assert gk.main() == gk.generations()[0] and supervisor.rollbacks == 1
    assert applier.after.container not in (None, applier.before.container)
    notes = "\n".join(p.read_text() for p in supervisor.instance.journal.rglob("notes.md"))
    assert "probation-rollback" in notes and "Generation 1 crashed more than" in notes


def test_a_roll_back_with_nowhere_to_go_gives_up(tmp_path):
    engine = FakeEngine()
    instance = fake_instance(tmp_path / "home", engine)
    supervisor = Supervisor(instance, engine, "fake-image", stop_when=Applier(lambda s: RollBack(0)))
    with pytest.raises(GaveUpError, match="cannot be rolled back"):
        supervisor.run()
    gave_up = [r for r in gatekeeper_of(instance, engine).log.records() if r.kind == DecisionKind.GAVE_UP]
    assert len(gave_up) == 1 and "cannot be rolled back" in gave_up[0].details["reason"]
    assert engine.running(instance.instance_id) == [] and StatusFile(instance.status_file).read().state == "stopped"


def test_give_up_records_journals_and_raises(tmp_path):
    engine = FakeEngine()
    instance = fake_instance(tmp_path / "home", engine)
    supervisor = Supervisor(instance, engine, "fake-image", stop_when=Applier(lambda s: GiveUp("it crash-loops")))
    with pytest.raises(GaveUpError, match="it crash-loops; inspect"):
        supervisor.run()
    records = [r for r in gatekeeper_of(instance, engine).log.records() if r.kind == DecisionKind.GAVE_UP]
    assert [r.details["reason"] for r in records] == ["it crash-loops"]
    notes = "\n".join(p.read_text() for p in instance.journal.rglob("notes.md"))
    assert "supervisor-gave-up" in notes and "it crash-loops" in notes


def test_the_one_transition_function_refuses_what_states_py_does_not_allow(tmp_path):
    def stopped_then_running(supervisor: Supervisor) -> Decision:
        supervisor.transition(SupervisorState.STOPPING)
        with pytest.raises(StateError, match="stopping -> running"):
            supervisor.transition(SupervisorState.RUNNING)
        return Continue()

    _, applier, _ = run(tmp_path, stopped_then_running)
    assert applier.after.state is SupervisorState.STOPPING
