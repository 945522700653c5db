"""The real supervisor under systemd's protocol, and stopped from another PID namespace.

No systemd runs here: the test is systemd's side of sd_notify, a datagram socket in NOTIFY_SOCKET.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.system.conftest import containers_of, scenario

pytestmark = pytest.mark.docker


class NotifySocket:
    def __init__(self, path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[tuple[float, str]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return
            for line in data.decode().splitlines():
                self.messages.append((time.monotonic(), line))

    def wait_for(self, prefix: str, timeout: float = 90) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, line in list(self.messages):
                if line.startswith(prefix):
                    return at
            time.sleep(0.05)
        raise AssertionError(f"no {prefix!r}; got {[m for _, m in self.messages][-20:]}")


def test_ready_status_watchdog_then_a_stop_from_another_pid_namespace(
    make_instance, start_supervisor, docker_engine, tmp_path, monkeypatch
):
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) to make a second PID namespace")
    notify = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    instance = make_instance(scenario("idle_loop.json"))
    process = start_supervisor(instance)
    ready_at = notify.wait_for("READY=1")
    assert any(line.startswith("STATUS=running, generation 0") for _, line in notify.messages)
    time.sleep(2.5)
    pings = [at for at, line in notify.messages if line == "WATCHDOG=1" and at >= ready_at]
    assert len(pings) >= 4, notify.messages  # every quarter of WatchdogSec, from the loop
    # `supervisor stop` in a new PID namespace cannot see the supervisor's pid: it must ask through
    # the control file, never signal a pid (PID 1 there would be itself).
    stop = subprocess.run(
        [
            "unshare",
            "--pid",
            "--fork",
            "--mount-proc",
            sys.executable,
            "-m",
            "supervisor",
            "stop",
            "--home",
            str(instance.home),
            "--json",
            "--timeout",
            "120",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert stop.returncode == 0, stop.stderr + stop.stdout
    assert json.loads(stop.stdout)["via"] == "control"
    assert process.process.wait(timeout=60) == 0
    notify.wait_for("STOPPING=1", timeout=5)
    assert containers_of(docker_engine, instance) == []
