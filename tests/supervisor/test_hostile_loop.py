"""What a hostile agent can do to the event loop itself: keep its inbox busy, crash on cue, race its ends.

Real instances on the fake engine; the agent's script is the adversary.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sandbox.fake import FakeContainer, FakeEngine
from supervisor.base import process_control
from supervisor.loop.decisions import ProposalArrived, Tick
from supervisor.loop.event_loop import Supervisor
from supervisor.loop.inbox import TICK_S, Inbox
from tests.supervisor.fakes import fake_instance, run_in_thread


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
