"""Weather, with the real engine: a full disk, a second supervisor on the same repository, a hostile
agent churning its workspace and naming files with invalid UTF-8 while it proposes."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from supervisor.base.git_ops import MAIN_REF
from supervisor.store.decision_kinds import DecisionKind
from tests.chaos.chaos_instance import chaos_instance, decisions_per_proposal, written_ids
from tests.supervisor.fakes import write_proposal

from .conftest import SUPERVISOR, SupervisorProcess, containers_of, gatekeeper_of, scenario

pytestmark = pytest.mark.docker


@pytest.fixture
def small_disk(tmp_path):
    """A 96 MB tmpfs the test can fill (needs root, as the Docker tests do)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.fail(f"cannot mount a small tmpfs ({done.stderr.strip()}); this test needs root")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(folder: Path) -> Path:
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1024 * 1024, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_pauses_gating_without_a_false_verdict_and_resumes_once_space_is_freed(
    small_disk, docker_engine, agent_image, tmp_path
):
    from supervisor.store.instance_init import init_instance

    home = small_disk / "home"
    instance = init_instance(home, scenario("idle_loop.json"), model="claude-sonnet-5-5")
    # The state directory's own disk fills here; the agent's areas stay on it (no loop-mounted caps,
    # which tests/sandbox/test_disk_cap.py covers), so the proposal can be moved in after it filled.
    instance.config_path.write_text(instance.config_path.read_text() + '\n[disk]\nmode = "off"\n')
    gk = gatekeeper_of(instance, docker_engine, agent_image)
    gk.genesis()
    process = SupervisorProcess(instance)
    try:
        process.wait_for(r"agent running: generation 0")
        status = json.loads(instance.status_file.read_text())
        workspace = gk.store.load(status["candidate"]).worktree
        Path(workspace, "agent", "disk_note.py").write_text('"""Written just before the disk filled."""\n')
        records_before = sum(1 for _ in gk.log.records())
        outbox = instance.run_dir / "outbox"
        proposal_id = write_proposal(outbox.parent)  # written beside the outbox, moved in once the disk is full
        filler = fill(small_disk)
        os.replace(outbox.parent / f"{proposal_id}.json", outbox / f"{proposal_id}.json")
        process.wait_for(r"disk full: gating paused", timeout=60)
        time.sleep(3)
        assert json.loads(instance.status_file.read_text())["state"] == "paused: disk full"
        # No verdict, no torn record: the only record since is the end of the agent's run, which the
        # loop stopped to gate the proposal (the scorecard's time alive is made of these ends).
        added = [r.kind for r in gk.log.records()][records_before:]
        assert added == [DecisionKind.AGENT_STOPPED]
        assert gk.log.verify().ok
        filler.unlink()
        process.wait_for(r"accepted: main is now", timeout=90)
        assert process.terminate() == 0
    finally:
        if process.process.poll() is None:
            process.kill9()
        docker_engine.reconcile(instance=instance.instance_id)
    assert decisions_per_proposal(gk)[proposal_id] == ["accepted"]
    assert "rejected" not in [r.kind for r in gk.log.records()]
    assert gk.log.verify().ok
    assert containers_of(docker_engine, instance) == []
    assert not instance.pid_file.exists()


def test_a_second_home_on_the_same_repository_refuses_even_with_the_lock_files_deleted(
    make_instance, docker_engine, agent_image, tmp_path
):
    instance = make_instance(scenario("idle_loop.json"))
    other_home = tmp_path / "other"
    other_home.mkdir()
    (other_home / "repo.git").symlink_to(instance.repo)
    (other_home / "ouroboros.toml").write_text(instance.config_path.read_text())
    first = SupervisorProcess(instance)
    try:
        first.wait_for(r"agent running: generation 0")
        state_dir = instance.repo / "ouroboros"
        journal_root = (state_dir / "journal-root").read_text()
        before = _listing(state_dir)
        for _attempt in range(2):
            done = subprocess.run(
                [*SUPERVISOR, "start", "--home", str(other_home)], capture_output=True, text=True, timeout=60
            )
            assert done.returncode != 0 and "one repository, one supervisor" in done.stderr, done.stderr
            assert "Traceback" not in done.stderr
            (instance.run_dir / "supervisor.lock").unlink(missing_ok=True)  # deleting lock files lets nobody in
            (state_dir / "supervisor.holder").unlink(missing_ok=True)
        assert (state_dir / "journal-root").read_text() == journal_root
        assert _listing(state_dir) - {"supervisor.holder"} == before - {"supervisor.holder"}
        assert not (other_home / "run").exists()
        assert len(containers_of(docker_engine, instance)) == 1
        assert first.process.poll() is None
        assert first.terminate() == 0
    finally:
        if first.process.poll() is None:
            first.kill9()


def _listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if "tmp" not in p.parts}


HOSTILE_AGENT = r"""
import datetime, json, os, threading, time, uuid
ws, out = os.environ["OUROBOROS_WORKSPACE"], os.environ["OUROBOROS_OUTBOX"]
marker = os.path.join(ws, "agent", "journal", "hostile-runs.txt")
runs = open(marker).read().count("\n") if os.path.exists(marker) else 0
with open(marker, "a") as f:
    f.write("run\n")
churn = os.path.join(ws, "agent", "churn")
os.makedirs(churn, exist_ok=True)
def churning():
    n = 0
    while True:
        path = os.path.join(churn, "f%d" % (n % 200))
        try:
            with open(path, "w") as f:
                f.write("x" * (n % 500))
            if n % 3 == 0:
                os.unlink(path)
            if n % 7 == 0:
                os.makedirs(path + ".d", exist_ok=True)
                os.rmdir(path + ".d")
        except OSError:
            pass
        n += 1
threading.Thread(target=churning, daemon=True).start()
time.sleep(1)
if runs == 0:
    open(os.path.join(os.fsencode(ws), b"agent", b"bad-\xff\xfe.py"), "w").close()
pid = uuid.uuid4().hex
message = {"version": 1, "kind": "proposal", "id": pid, "why": "Hostile churn.", "summary": "Churn " + pid[:8],
           "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat()}
with open(os.path.join(out, pid + ".json.tmp"), "w") as f:
    f.write(json.dumps(message))
os.rename(os.path.join(out, pid + ".json.tmp"), os.path.join(out, pid + ".json"))
with open(os.path.join(ws, "agent", "journal", "chaos-written.txt"), "a") as f:
    f.write(pid + "\n")
while True:
    time.sleep(1)
"""


def test_a_hostile_agent_churning_files_and_naming_them_in_invalid_utf8_gets_clean_verdicts(
    tmp_path, docker_engine, agent_image
):
    instance = chaos_instance(tmp_path / "home", docker_engine, agent_image)
    config = instance.config_path.read_text()
    start = config.index("command = ")
    end = config.index("\n", start)
    instance.config_path.write_text(
        config[:start] + "command = " + json.dumps(["python", "-c", HOSTILE_AGENT]) + config[end:]
    )
    gk = gatekeeper_of(instance, docker_engine, agent_image)
    process = SupervisorProcess(instance)
    try:
        process.wait_for(r"rejected: candidate", timeout=120)
        process.wait_for(r"accepted: main is now", timeout=120)
        assert process.process.poll() is None
        assert process.terminate() == 0
    finally:
        if process.process.poll() is None:
            process.kill9()
        docker_engine.reconcile(instance=instance.instance_id)
    decided = decisions_per_proposal(gk)
    first, second = written_ids(instance)[:2]
    assert decided[first] == ["rejected"] and decided[second] == ["accepted"]
    rejected = next(r for r in gk.log.records() if r.kind == "rejected")
    assert any("not valid UTF-8" in reason and "\\xff" in reason for reason in rejected.reasons)
    assert gk.log.verify().ok
    assert gk.git.ref_value(MAIN_REF) in set(gk.generations().values())
    # The accepted snapshot holds what the churn left when the agent was stopped: whole files only.
    assert containers_of(docker_engine, instance) == []
    again = SupervisorProcess(instance)  # and the instance starts again
    try:
        again.wait_for(r"agent running: generation", timeout=120)
        assert again.terminate() == 0
    finally:
        if again.process.poll() is None:
            again.kill9()
        docker_engine.reconcile(instance=instance.instance_id)
