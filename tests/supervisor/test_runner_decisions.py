"""The runner's decisions on the fake engine: leftovers, stops, engine loss, full disks, two homes."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import pytest

from sandbox.errors import SandboxError
from sandbox.fake import FakeEngine, passing_gate
from sandbox.spec import ContainerSpec, RunResult
from supervisor.base.repo_lock import RepositoryLockedError
from supervisor.cli.log_lines import lines_to
from supervisor.gate import workspace_commit
from supervisor.loop.event_loop import Supervisor
from supervisor.store.decision_kinds import DecisionKind
from supervisor.store.states import SupervisorState
from tests.supervisor.fakes import (
    fake_instance,
    gatekeeper_of,
    proposing_agent,
    run_in_thread,
    verdict_kinds,
    write_proposal,
)


def wait_until(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def verdicts_for(gatekeeper, proposal_id: str) -> list[str]:
    """Every record that decided `proposal_id`: a verdict of its candidate, or a drop naming it."""
    found = []
    for record in gatekeeper.log.records():
        if record.kind == DecisionKind.PROPOSAL_DROPPED and proposal_id in record.details.get("proposals", []):
            found.append(record.kind)
        elif (
            record.kind
            in (
                DecisionKind.ACCEPTED,
                DecisionKind.REJECTED,
                DecisionKind.NEEDS_APPROVAL,
                DecisionKind.INFRASTRUCTURE_ERROR,
            )
            and record.details.get("proposal") == proposal_id
        ):
            found.append(record.kind)
    return found


def test_a_leftover_proposal_with_no_workspace_gets_a_candidate_and_one_verdict(tmp_path):
    engine = FakeEngine()
    instance = fake_instance(tmp_path / "home", engine)
    outbox = instance.run_dir / "outbox"
    outbox.mkdir(parents=True)
    proposal_id = write_proposal(outbox)  # as if the run that wrote it was stopped mid-gate and is gone
    supervisor = Supervisor(instance, engine, "fake-image", stop_when=lambda s: s.verdict_count >= 1)
    assert supervisor.run() == 0
    gk = gatekeeper_of(instance, engine)
    assert verdicts_for(gk, proposal_id) == ["rejected"]  # its workspace is gone: it changes nothing
    assert list(outbox.iterdir()) == []
    assert gk.log.verify().ok
    assert engine.running(instance.instance_id) == []


def test_an_accepted_proposal_restarts_the_agent_on_the_new_main(tmp_path):
    written: list[str] = []
    engine = FakeEngine(agent=proposing_agent(written))
    instance = fake_instance(tmp_path / "home", engine)
    supervisor = Supervisor(instance, engine, "fake-image", stop_when=lambda s: s.verdict_count >= 2)
    assert supervisor.run() == 0
    gk = gatekeeper_of(instance, engine)
    assert [verdicts_for(gk, pid) for pid in written[:2]] == [["accepted"], ["accepted"]]
    assert gk.main() == gk.generations()[2]
    assert engine.running(instance.instance_id) == []  # shutdown stopped the agent
    assert not instance.pid_file.exists()


def test_the_agent_is_stopped_before_its_workspace_is_judged_or_removed(tmp_path):
    churned = threading.Event()

    def churning_agent(container):
        workspace = Path(container.mount("/workspace"))
        from tests.supervisor.fakes import write_proposal as propose

        (workspace / "agent" / "churn").mkdir()
        propose(Path(container.mount("/ouroboros/outbox")))
        n = 0
        while not container.stopped.is_set():  # churns until stopped, as fast as it can
            path = workspace / "agent" / "churn" / f"f{n % 50}"
            path.write_text("x" * (n % 100))
            if n % 3 == 0:
                path.unlink(missing_ok=True)
            n += 1
            churned.set()
        return 137

    seen_running: list[int] = []

    def gate(spec: ContainerSpec) -> RunResult:
        seen_running.append(sum(1 for c in engine.running() if not c.stopped.is_set()))
        return passing_gate(spec)

    engine = FakeEngine(gate=gate, agent=churning_agent)
    instance = fake_instance(tmp_path / "home", engine)
    seen_running.clear()
    supervisor = Supervisor(instance, engine, "fake-image", stop_when=lambda s: s.verdict_count >= 1)
    assert supervisor.run() == 0
    assert churned.is_set() and seen_running and set(seen_running) == {0}
    assert gatekeeper_of(instance, engine).log.verify().ok


def test_a_file_name_that_is_not_utf8_is_a_clean_recorded_rejection(tmp_path):
    def hostile_edit(workspace: Path) -> None:
        os.close(os.open(os.path.join(os.fsencode(workspace / "agent"), b"bad-\xff\xfe.py"), os.O_CREAT | os.O_WRONLY))

    written: list[str] = []
    engine = FakeEngine(agent=proposing_agent(written, edit=hostile_edit))
    instance = fake_instance(tmp_path / "home", engine)
    supervisor = Supervisor(instance, engine, "fake-image", stop_when=lambda s: s.verdict_count >= 1)
    assert supervisor.run() == 0
    gk = gatekeeper_of(instance, engine)
    assert verdicts_for(gk, written[0]) == ["rejected"]
    record = next(r for r in gk.log.records() if r.kind == "rejected")
    assert "not valid UTF-8" in " ".join(record.reasons) and "\\xff" in " ".join(record.reasons)
    assert gk.log.verify().ok
    # ... and the instance starts again (the old failure mode: recover() raised at every start).
    again = Supervisor(instance, engine, "fake-image", stop_when=lambda s: s.agent is not None)
    assert again.run() == 0


def test_a_gate_the_engine_fails_is_retried_after_it_returns_never_rejected(tmp_path, monkeypatch):
    monkeypatch.setattr("supervisor.gate.outages.INFRA_BACKOFF_S", 0.05)
    calls: list[str] = []

    def gate(spec: ContainerSpec) -> RunResult:
        calls.append(spec.run_id)
        if len(calls) == 1:
            engine.go_down()  # an engine restart while the gate runs
            threading.Timer(1.0, engine.come_back).start()
        return passing_gate(spec)

    written: list[str] = []
    engine = FakeEngine(agent=proposing_agent(written))
    instance = fake_instance(tmp_path / "home", engine)
    engine.gate = gate
    states: list[SupervisorState] = []
    supervisor = Supervisor(
        instance, engine, "fake-image", stop_when=lambda s: states.append(s.status.state) or s.verdict_count >= 1
    )
    assert supervisor.run() == 0
    gk = gatekeeper_of(instance, engine)
    assert verdicts_for(gk, written[0]) == ["accepted"]
    assert len(calls) == 2
    record = gk.store.load(gk.store.candidate_for(written[0]))
    assert record.infra_tries == 1 and record.state == "accepted"


def test_a_gate_container_a_stopping_engine_killed_is_retried_never_rejected(tmp_path, monkeypatch):
    """A stopping dockerd closes its API, then stops its containers: the gate's wait comes back with
    143 and no report, as if the candidate's tests had died. Judged by the engine's health, not the code."""
    monkeypatch.setattr("supervisor.gate.outages.INFRA_BACKOFF_S", 0.05)
    calls: list[str] = []

    def gate(spec: ContainerSpec) -> RunResult:
        calls.append(spec.run_id)
        if len(calls) == 1:
            engine.go_down(stops_containers=True)
            threading.Timer(1.0, engine.come_back).start()
            return RunResult(
                exit_code=143,
                timed_out=False,
                output="",
                output_bytes=0,
                truncated=False,
                duration_s=0.01,
                container_id="killed",
            )
        return passing_gate(spec)

    written: list[str] = []
    engine = FakeEngine(agent=proposing_agent(written))
    instance = fake_instance(tmp_path / "home", engine)
    engine.gate = gate
    supervisor = Supervisor(instance, engine, "fake-image", stop_when=lambda s: s.verdict_count >= 1)
    assert supervisor.run() == 0
    gk = gatekeeper_of(instance, engine)
    assert verdicts_for(gk, written[0]) == ["accepted"]
    assert "rejected" not in verdict_kinds(gk) and len(calls) == 2


def test_tries_of_a_gate_the_engine_failed_span_an_engine_restart():
    from supervisor.gate.outages import INFRA_TRIES, infra_backoff_s

    pauses = [infra_backoff_s(tries) for tries in range(1, INFRA_TRIES)]
    assert pauses == sorted(pauses) and pauses[0] >= 2  # never a burst of tries within a second
    assert sum(pauses) >= 60  # a restart that stops containers takes tens of seconds


def test_a_gate_the_engine_keeps_failing_is_an_infrastructure_error_not_a_rejection(tmp_path, monkeypatch):
    monkeypatch.setattr("supervisor.gate.outages.INFRA_BACKOFF_S", 0.05)

    def broken(spec: ContainerSpec) -> RunResult:
        raise SandboxError("Docker engine error: 500 Server Error")

    written: list[str] = []
    engine = FakeEngine(agent=proposing_agent(written))
    instance = fake_instance(tmp_path / "home", engine)
    engine.gate = broken
    supervisor = Supervisor(instance, engine, "fake-image", stop_when=lambda s: s.verdict_count >= 1)
    assert supervisor.run() == 0
    gk = gatekeeper_of(instance, engine)
    assert verdicts_for(gk, written[0]) == ["infrastructure-error"]
    assert "rejected" not in verdict_kinds(gk)
    assert not gk.git.refs("refs/ouroboros/rejected")
    notes = "\n".join(p.read_text() for p in instance.journal.rglob("notes.md"))
    assert "gate-infrastructure-error" in notes and "says nothing about the proposal" in notes


@pytest.mark.parametrize("stops_containers", [False, True], ids=["engine-vanishes", "engine-stops-its-containers"])
def test_an_engine_restart_restarts_the_agent_exactly_once_and_counts_no_crash(tmp_path, stops_containers):
    engine = FakeEngine()
    instance = fake_instance(tmp_path / "home", engine)
    supervisor = Supervisor(instance, engine, "fake-image")
    thread, outcome = run_in_thread(supervisor)
    wait_until(lambda: supervisor.agent is not None)
    first = supervisor.agent.container.id
    seen: list[str] = []
    engine.go_down(stops_containers)
    wait_until(lambda: supervisor.status.state is SupervisorState.WAITING_FOR_ENGINE or seen.append("x"))
    time.sleep(1.0)
    engine.come_back()
    wait_until(lambda: supervisor.agent is not None and supervisor.agent.container.id != first)
    time.sleep(1.0)
    assert len(engine.running(instance.instance_id)) == 1
    assert supervisor.status.restarts == 0 and supervisor.status.state is SupervisorState.RUNNING
    supervisor.request_stop()
    thread.join(20)
    assert outcome == {"code": 0} and engine.running(instance.instance_id) == []


def test_a_full_disk_pauses_gating_then_the_proposal_gets_one_real_verdict(tmp_path, monkeypatch):
    real = workspace_commit.make_candidate_commit
    full = threading.Event()
    full.set()

    def no_space(*args, **kwargs):
        if full.is_set():
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr("supervisor.gate.gatekeeper.make_candidate_commit", no_space)
    written: list[str] = []
    engine = FakeEngine(agent=proposing_agent(written))
    instance = fake_instance(tmp_path / "home", engine)
    supervisor = Supervisor(instance, engine, "fake-image", stop_when=lambda s: s.verdict_count >= 1)
    thread, outcome = run_in_thread(supervisor)
    wait_until(
        lambda: instance.status_file.exists() and '"paused: disk full"' in instance.status_file.read_text()
    )  # what `status` shows
    gk = gatekeeper_of(instance, engine)
    assert verdict_kinds(gk) == []  # no verdict while the disk is full
    full.clear()
    monkeypatch.setattr("supervisor.loop.outage_wait.DISK_RETRY_S", 0.1)
    supervisor.disk_weather.retry_at = 0.0
    thread.join(30)
    assert outcome == {"code": 0}
    assert verdicts_for(gk, written[0]) == ["accepted"]


def test_a_second_supervisor_on_the_same_repository_refuses_even_after_the_lock_file_is_deleted(tmp_path):
    engine = FakeEngine()
    instance = fake_instance(tmp_path / "home", engine)
    other_home = tmp_path / "other"
    other_home.mkdir()
    (other_home / "repo.git").symlink_to(instance.repo)
    (other_home / "ouroboros.toml").write_text(instance.config_path.read_text())
    from supervisor.store.instance import Instance

    other = Instance(other_home)
    first = Supervisor(instance, engine, "fake-image")
    thread, outcome = run_in_thread(first)
    wait_until(lambda: first.agent is not None)
    before = sorted(p.name for p in (instance.repo / "ouroboros").rglob("*"))
    for lock in (instance.run_dir / "supervisor.lock", instance.repo / "ouroboros" / "supervisor.holder"):
        lock.unlink()
    with pytest.raises(RepositoryLockedError, match="one repository, one supervisor"):
        Supervisor(other, engine, "fake-image").run()
    with pytest.raises(RepositoryLockedError):
        Supervisor(instance, engine, "fake-image").run()
    assert not (other_home / "run").exists()  # refused before touching anything
    assert len(engine.running()) == 1
    after = sorted(p.name for p in (instance.repo / "ouroboros").rglob("*"))
    transient = ("-wal", "-shm", "-journal")  # SQLite's, opened and closed by the first supervisor as it runs
    assert {name for name in set(before) - set(after) if not name.endswith(transient)} == {"supervisor.holder"}
    first.request_stop()
    thread.join(20)
    assert outcome == {"code": 0}


def test_shutdown_stops_the_agent_and_removes_the_pid_file_even_when_steps_fail(tmp_path, monkeypatch):
    engine = FakeEngine()
    instance = fake_instance(tmp_path / "home", engine)

    def broken(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("supervisor.loop.route_service.ModelService.stop_route", broken)
    monkeypatch.setattr("supervisor.store.agent_log.RotatingLog.close", broken)
    lines: list[str] = []
    supervisor = Supervisor(instance, engine, "fake-image", stop_when=lambda s: s.agent is not None)
    with lines_to(lines.append):
        assert supervisor.run() == 0
    assert engine.running(instance.instance_id) == []
    assert not instance.pid_file.exists()
    assert any("could not stop the LLM route" in line for line in lines)


def test_a_corrupt_finished_record_and_a_torn_log_tail_do_not_block_a_start(tmp_path):
    engine = FakeEngine()
    instance = fake_instance(tmp_path / "home", engine)
    gk = gatekeeper_of(instance, engine)
    done = gk.store.done / "0-9.json"
    done.write_text('{"id": "0-9", "state": "acc')
    with open(gk.log.path, "ab") as handle:
        handle.write(b'{"seq": 99, "kind": "accep')  # a kill in the middle of an append
    lines: list[str] = []
    supervisor = Supervisor(instance, engine, "fake-image", stop_when=lambda s: s.agent is not None)
    with lines_to(lines.append):
        assert supervisor.run() == 0
    assert any("decisions.jsonl" in line and "torn" in line for line in lines)
    assert gk.log.verify().ok
    assert [r.id for r in gk.store.newest(0)[0]] and done in gk.store.corrupt
    with pytest.raises(Exception, match=str(done)):
        gk.store.load("0-9")


def test_queued_proposals_of_a_judged_workspace_are_dropped_once_each_and_noted_once(tmp_path):
    written: list[str] = []
    engine = FakeEngine(agent=proposing_agent(written, times=4))
    instance = fake_instance(tmp_path / "home", engine)
    supervisor = Supervisor(instance, engine, "fake-image", stop_when=lambda s: s.verdict_count >= 2)
    assert supervisor.run() == 0
    gk = gatekeeper_of(instance, engine)
    decided = [pid for pid in written if verdicts_for(gk, pid)]
    assert all(len(verdicts_for(gk, pid)) == 1 for pid in written)
    assert len(decided) >= 5  # two judged, the rest of their runs dropped
    notes = "\n".join(p.read_text() for p in instance.journal.rglob("notes.md"))
    assert notes.count("proposal-dropped") == 1  # throttled: at most one note a minute


def test_a_stop_while_a_gate_waits_for_the_engine_leaves_a_state_the_next_start_finishes(tmp_path):
    def gate(spec: ContainerSpec) -> RunResult:
        engine.go_down()  # and it stays down until the test brings it back
        return passing_gate(spec)

    written: list[str] = []
    engine = FakeEngine(agent=proposing_agent(written))
    instance = fake_instance(tmp_path / "home", engine)
    engine.gate = gate
    supervisor = Supervisor(instance, engine, "fake-image")
    thread, outcome = run_in_thread(supervisor)
    wait_until(lambda: supervisor.status.state is SupervisorState.WAITING_FOR_ENGINE)
    supervisor.request_stop()
    thread.join(20)
    assert outcome == {"code": 0}
    gk = gatekeeper_of(instance, engine)
    record = gk.store.load(gk.store.candidate_for(written[0]))
    assert record.state == "gating" and record.infra_tries == 1
    assert (instance.run_dir / "outbox" / f"{written[0]}.json").exists()
    assert verdict_kinds(gk) == [] and not instance.pid_file.exists()

    engine.come_back()
    engine.gate = passing_gate
    again = Supervisor(instance, engine, "fake-image", stop_when=lambda s: s.verdict_count >= 1)
    assert again.run() == 0
    assert verdicts_for(gk, written[0]) == ["accepted"]
    assert gk.log.verify().ok


def test_an_engine_that_flaps_while_its_leftovers_are_removed_does_not_stop_the_supervisor(tmp_path, monkeypatch):
    monkeypatch.setattr("supervisor.gate.outages.INFRA_BACKOFF_S", 0.05)
    engine = FakeEngine()
    real_reconcile = engine.reconcile
    flaps: list[str] = []

    def flapping_reconcile(*args, **kwargs):
        if engine_was_down.is_set() and not flaps:
            flaps.append("x")
            raise SandboxError("Docker engine error: connection refused")  # gone again right after a ping
        return real_reconcile(*args, **kwargs)

    engine_was_down = threading.Event()
    engine.reconcile = flapping_reconcile
    instance = fake_instance(tmp_path / "home", engine)
    supervisor = Supervisor(instance, engine, "fake-image")
    thread, outcome = run_in_thread(supervisor)
    wait_until(lambda: supervisor.agent is not None)
    first = supervisor.agent.container.id
    engine_was_down.set()
    engine.go_down()
    wait_until(lambda: supervisor.status.state is SupervisorState.WAITING_FOR_ENGINE)
    engine.come_back()
    wait_until(lambda: supervisor.agent is not None and supervisor.agent.container.id != first)
    assert flaps and thread.is_alive()
    supervisor.request_stop()
    thread.join(20)
    assert outcome == {"code": 0}


def test_an_agent_that_exits_143_while_the_engine_answers_is_a_crash_not_weather(tmp_path):
    """The agent can exit with the code a stopping engine leaves; only the engine's own answer (a
    fresh ping) makes an exit weather, so this cannot dodge probation."""
    runs: list[str] = []

    def agent(container) -> int:
        runs.append(container.id)
        if len(runs) == 1:
            return 143
        container.stopped.wait()
        return 137

    engine = FakeEngine(agent=agent)
    instance = fake_instance(tmp_path / "home", engine)
    supervisor = Supervisor(instance, engine, "fake-image", stop_when=lambda s: s.status.restarts >= 1)
    assert supervisor.run() == 0
    crashes = [r for r in gatekeeper_of(instance, engine).log.records() if r.kind == "agent-crashed"]
    assert [r.details["exit_code"] for r in crashes] == [143]


def test_a_kill_just_after_main_moved_is_finished_as_one_acceptance_with_one_tag(tmp_path, monkeypatch):
    """The merge asks whether the commit is already in main only when it was not made on main: a
    kill between the move of main and the tag must still be recognised as merged, not rebased."""
    from supervisor.base.git_ops import MAIN_REF, Git

    written: list[str] = []
    engine = FakeEngine(agent=proposing_agent(written))
    instance = fake_instance(tmp_path / "home", engine)
    real_update = Git.update_ref

    def killed_after_main_moved(self, ref, *args, **kwargs):
        real_update(self, ref, *args, **kwargs)
        if ref == MAIN_REF:
            raise KeyboardInterrupt  # stands for a kill: nothing after the move runs

    monkeypatch.setattr(Git, "update_ref", killed_after_main_moved)
    with pytest.raises(KeyboardInterrupt):
        Supervisor(instance, engine, "fake-image").run()
    monkeypatch.setattr(Git, "update_ref", real_update)
    engine.reconcile(instance=instance.instance_id)
    gk = gatekeeper_of(instance, engine)
    moved = gk.main()
    assert verdicts_for(gk, written[0]) == []

    again = Supervisor(instance, engine, "fake-image", stop_when=lambda s: s.verdict_count >= 1)
    assert again.run() == 0
    assert verdicts_for(gk, written[0]) == ["accepted"]
    assert [n for n, sha in gk.generations().items() if sha == moved] == [1]
    assert gk.log.verify().ok


def test_an_agent_that_fails_on_its_own_while_the_engine_is_away_is_still_a_crash(tmp_path):
    """An engine that does not answer excuses only the exits a stopping engine leaves (0, 137, 143):
    an agent exiting 1 at that moment is a counted crash, never a free restart."""
    runs: list[str] = []

    def agent(container) -> int:
        runs.append(container.id)
        if len(runs) == 1:
            engine.down = True  # the engine stops answering, its containers untouched...
            threading.Timer(1.0, engine.come_back).start()
            return 1  # ...and the agent fails by itself at that moment
        container.stopped.wait()
        return 137

    engine = FakeEngine(agent=agent)
    instance = fake_instance(tmp_path / "home", engine)
    supervisor = Supervisor(instance, engine, "fake-image", stop_when=lambda s: len(runs) >= 2)
    assert supervisor.run() == 0
    crashes = [r for r in gatekeeper_of(instance, engine).log.records() if r.kind == "agent-crashed"]
    assert [r.details["exit_code"] for r in crashes] == [1]
