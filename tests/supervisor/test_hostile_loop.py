"""What a hostile agent can do to the event loop itself: keep its inbox busy, crash on cue, race its ends.

Real instances on the fake engine; the agent's script is the adversary.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sandbox.errors import SandboxError
from sandbox.fake import FakeContainer, FakeEngine
from supervisor.base import process_control
from supervisor.loop.decisions import ProposalArrived, Restart, Tick
from supervisor.loop.event_loop import Supervisor
from supervisor.loop.inbox import TICK_S, Inbox
from supervisor.store.decision_kinds import DecisionKind
from supervisor.store.decision_log import DecisionLog
from tests.supervisor.fakes import fake_instance, gatekeeper_of, run_in_thread


def churning_agent(container: FakeContainer) -> int:
    """Writes a junk `*.json` into its outbox every 20 ms until it is stopped: every write is a change
    the outbox watcher reports, so the loop's inbox is never empty for long."""
    outbox = Path(container.mount("/ouroboros/outbox"))
    n = 0
    while not container.stopped.wait(0.02):
        n += 1
        try:
            (outbox / f"junk-{n}.json").write_text("not a proposal")
        except OSError:
            pass
    return 137


def test_the_clock_ticks_however_busy_the_inbox_is() -> None:
    inbox = Inbox()
    done = threading.Event()

    def flood() -> None:
        while not done.is_set():
            inbox.proposal_arrived()
            time.sleep(0.005)

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    ticks = 0
    deadline = time.monotonic() + 6 * TICK_S
    try:
        while time.monotonic() < deadline:
            event = inbox.take()
            if isinstance(event, Tick):
                ticks += 1
            else:
                assert isinstance(event, ProposalArrived)
    finally:
        done.set()
        thread.join()
    assert ticks >= 3  # about one per TICK_S, never starved by the flood


def test_supervisor_stop_is_honoured_while_the_agent_churns_its_outbox(tmp_path) -> None:
    """`supervisor stop` from another PID namespace is a file the clock looks at: an agent that keeps
    the outbox changing must not keep the clock (and so the stop, probation, a moved main) from coming."""
    engine = FakeEngine(agent=churning_agent)
    instance = fake_instance(tmp_path / "home", engine)
    supervisor = Supervisor(instance, engine, "fake-image")
    thread, outcome = run_in_thread(supervisor)
    deadline = time.monotonic() + 20
    while supervisor.agent is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert supervisor.agent is not None
    time.sleep(1.0)  # the churn is under way
    process_control.request_stop(instance.run_dir)
    thread.join(timeout=10)
    stopped = not thread.is_alive()
    if not stopped:
        supervisor.request_stop()  # let the test end either way
        thread.join(timeout=20)
    assert stopped, "the stop file was not honoured while the outbox churned"
    assert outcome.get("code") == 0
    assert engine.running(instance.instance_id) == []


def test_the_end_of_a_stopped_run_is_recorded_before_the_next_run_starts(tmp_path, monkeypatch) -> None:
    """The run's waiter thread and the loop's stop both see a run end: whichever records it, the record
    is on disk before the loop starts the next run (else the late end closes the new run's time alive)."""
    real_append = DecisionLog.append

    def slow_end_from_other_threads(self, kind, **fields):
        if kind == DecisionKind.AGENT_STOPPED and threading.current_thread() is not threading.main_thread():
            time.sleep(0.5)  # the waiter thread is slow to write: a busy machine
        return real_append(self, kind, **fields)

    monkeypatch.setattr(DecisionLog, "append", slow_end_from_other_threads)
    engine = FakeEngine()
    instance = fake_instance(tmp_path / "home", engine)
    restarted: list[bool] = []

    def restart_once(supervisor: Supervisor) -> bool:
        if supervisor.agent is None:
            return False
        if restarted:
            return True
        restarted.append(True)
        supervisor.apply(Restart("a test restarts it"))
        return False

    supervisor = Supervisor(instance, engine, "fake-image", stop_when=restart_once)
    assert supervisor.run() == 0
    time.sleep(1.0)  # any late writer has written by now
    runs = [
        (r.kind, r.details["run_id"])
        for r in gatekeeper_of(instance, engine).log.records()
        if r.kind in (DecisionKind.AGENT_STARTED, DecisionKind.AGENT_STOPPED)
    ]
    assert [kind for kind, _ in runs] == ["agent-started", "agent-stopped"] * 2
    assert runs[0][1] == runs[1][1] != runs[2][1] == runs[3][1]


def test_a_start_the_engine_refused_is_recorded_as_ended(tmp_path, monkeypatch) -> None:
    """`agent-started` is written before the container starts; a start the engine refuses must be
    recorded as ended too, or the scorecard counts a run that never was as alive while the loop
    waits for the engine."""
    engine = FakeEngine()
    instance = fake_instance(tmp_path / "home", engine)
    real_start = FakeEngine.start
    refused: list[bool] = []

    def refuse_first(self, spec, *, attach=False):
        if spec.role == "agent" and not refused:
            refused.append(True)
            raise SandboxError("the engine refused the container")
        return real_start(self, spec, attach=attach)

    monkeypatch.setattr(FakeEngine, "start", refuse_first)
    supervisor = Supervisor(instance, engine, "fake-image", stop_when=lambda s: s.agent is not None)
    assert supervisor.run() == 0
    assert refused
    runs = [
        (r.kind, r.details["run_id"])
        for r in gatekeeper_of(instance, engine).log.records()
        if r.kind in (DecisionKind.AGENT_STARTED, DecisionKind.AGENT_STOPPED)
    ]
    assert [kind for kind, _ in runs] == ["agent-started", "agent-stopped"] * 2
    assert runs[0][1] == runs[1][1] != runs[2][1] == runs[3][1]
