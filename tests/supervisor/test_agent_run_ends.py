"""Every agent run's end is recorded (`agent-stopped`), so the scorecard's time alive is the time the
agent ran: a stop by the supervisor (shutdown, a gate, main moved) and an exit of its own alike."""

from __future__ import annotations

from sandbox.fake import FakeEngine
from supervisor.loop.event_loop import Supervisor
from supervisor.store.decision_log import DecisionLog
from tests.supervisor.fakes import fake_instance, gatekeeper_of


def _runs(instance, engine) -> list[tuple[str, str]]:
    """(kind, run id) of each start and end, in log order."""
    records = gatekeeper_of(instance, engine).log.records()
    return [(r.kind, r.details["run_id"]) for r in records if r.kind in ("agent-started", "agent-stopped")]


def test_a_shutdown_records_the_end_of_the_run_it_stops(tmp_path) -> None:
    engine = FakeEngine()
    instance = fake_instance(tmp_path / "home", engine)
    supervisor = Supervisor(instance, engine, "fake-image", stop_when=lambda s: s.agent is not None)
    assert supervisor.run() == 0
    runs = _runs(instance, engine)
    assert [kind for kind, _ in runs] == ["agent-started", "agent-stopped"]
    assert runs[0][1] == runs[1][1]


def test_a_run_that_ends_on_its_own_is_recorded_once_with_its_code(tmp_path) -> None:
    ran: list[str] = []

    def agent(container) -> int:
        ran.append(container.id)
        if len(ran) == 1:
            return 3  # a crash: restarted
        container.stopped.wait()
        return 137

    engine = FakeEngine(agent=agent)
    instance = fake_instance(tmp_path / "home", engine)
    supervisor = Supervisor(instance, engine, "fake-image", stop_when=lambda s: s.status.restarts >= 1)
    assert supervisor.run() == 0
    runs = _runs(instance, engine)
    assert [kind for kind, _ in runs] == ["agent-started", "agent-stopped"] * 2
    assert runs[0][1] == runs[1][1] != runs[2][1] == runs[3][1]
    log = DecisionLog(instance.state / "decisions.jsonl")
    ends = [r.details["exit_code"] for r in log.records() if r.kind == "agent-stopped"]
    assert len(ends) == 2 and ends[0] == 3  # the crash's code; the stop's is None or what the kill left
