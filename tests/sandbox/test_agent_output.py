"""The agent's output is never lost: a fast burst far past the engine's log cap, then a marker line,
and the marker is in agent.log (the pump reads the attach stream, not the engine's rotating file)."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest

from sandbox import ContainerSpec, Limits
from supervisor.gate.agent_container import AgentRun
from supervisor.store.agent_log import RotatingLog, reopen_on_sighup

BURST = r"""
import sys
line = b"x" * 1023 + b"\n"
out = sys.stdout.buffer
for _ in range(20 * 1024):  # 20 MiB as fast as the pipe takes it
    out.write(line)
out.flush()
print("MARKER-AFTER-BURST", flush=True)
"""


@pytest.mark.docker
def test_a_20_mib_burst_then_a_marker_reaches_agent_log(docker_engine, agent_image, sandbox_instance, tmp_path):
    log_path = tmp_path / "agent.log"
    log = RotatingLog(log_path, max_bytes=8 * 1024 * 1024, keep=3)
    spec = ContainerSpec(
        image=agent_image,
        command=["python3", "-c", BURST],
        run_id=f"out-{uuid.uuid4().hex[:8]}",
        role="agent",
        instance=sandbox_instance,
        limits=Limits(log_max_mb=1),
    )
    run = AgentRun(docker_engine, spec, log)
    try:
        assert run.container.wait(timeout_s=120) == 0
        deadline = time.monotonic() + 30
        while "MARKER-AFTER-BURST" not in log_path.read_text(errors="replace") and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        run.stop(grace_s=1)
        log.close()
    assert "MARKER-AFTER-BURST" in log_path.read_text(errors="replace")
    files = [log_path, *(log_path.with_name(f"agent.log.{n}") for n in (1, 2, 3))]
    total = sum(path.stat().st_size for path in files if path.exists())
    assert total >= 20 * 1024 * 1024  # nothing of the burst was dropped either
    assert not log_path.with_name("agent.log.4").exists()  # keep=3 rotated files


def test_rotation_keeps_n_files_and_follows_logrotate(tmp_path):
    path = tmp_path / "agent.log"
    log = RotatingLog(path, max_bytes=100, keep=2)
    for n in range(10):
        log.write(b"%d" % n * 60 + b"\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent.log", "agent.log.1", "agent.log.2"]
    # logrotate (create mode) moves the file away and signals: the next write goes to a new file
    path.rename(tmp_path / "moved.log")
    previous = signal.getsignal(signal.SIGHUP)
    try:
        reopen_on_sighup()
        os.kill(os.getpid(), signal.SIGHUP)
        log.write(b"after-rotate\n")
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert path.read_bytes() == b"after-rotate\n"
    log.note_lost(123, OSError(28, "No space left on device"))
    log.write(b"back\n")
    assert b"123 bytes of agent output lost" in path.read_bytes()
    log.close()


def test_an_outside_rotation_is_followed_without_a_signal(tmp_path, monkeypatch):
    path = tmp_path / "agent.log"
    log = RotatingLog(path)
    log.write(b"one\n")
    path.rename(tmp_path / "agent.log.old")
    monkeypatch.setattr(log, "_checked", time.monotonic() - 5)  # the once-a-second check is due
    log.write(b"two\n")
    assert path.read_bytes() == b"two\n" and (tmp_path / "agent.log.old").read_bytes() == b"one\n"
    log.close()
