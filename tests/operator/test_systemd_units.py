"""packaging/systemd: units systemd accepts, timeouts above the gate's deadline, the gave-up exit
code kept from restarting; and the sd_notify messages the supervisor sends."""

from __future__ import annotations

import configparser
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from supervisor.base.errors import EXIT_GAVE_UP
from supervisor.base.sd_notify import Notifier
from supervisor.gate.config import GateConfig
from supervisor.store.instance import AgentSettings
from tests.operator.conftest import ROOT

UNITS = ROOT / "packaging" / "systemd"
SUPERVISOR = Path(sys.executable).parent / "supervisor"


def _service(name: str) -> dict[str, str]:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(UNITS / name)
    return dict(parser["Service"])


@pytest.mark.parametrize(
    "name,verify_as", [("ouroboros.service", "ouroboros.service"), ("ouroboros@.service", "ouroboros@alpha.service")]
)
def test_units_pass_systemd_analyze_verify(name: str, verify_as: str, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    text = (UNITS / name).read_text().replace("/opt/ouroboros/.venv/bin/supervisor", str(SUPERVISOR))
    (tmp_path / name).write_text(text)
    done = subprocess.run([analyze, "verify", str(tmp_path / verify_as)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr  # unknown keys are only warnings


@pytest.mark.parametrize("name", ["ouroboros.service", "ouroboros@.service"])
def test_units_wait_for_a_gate_and_keep_a_gave_up_supervisor_down(name: str) -> None:
    service = _service(name)
    longest_gate = GateConfig().deadline_s + AgentSettings().stop_grace_s
    assert service["Type"] == "notify" and int(service["WatchdogSec"]) > GateConfig().deadline_s
    assert int(service["TimeoutStopSec"]) > longest_gate
    assert service["RestartPreventExitStatus"] == str(EXIT_GAVE_UP)
    assert all("#" not in value for value in service.values())  # systemd has no trailing comments
    assert "%i" in service["Environment"] or name == "ouroboros.service"


def test_notifier_sends_ready_status_watchdog_and_stopping(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(path))
    receiver.settimeout(2)
    notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "4000000"})
    notifier.publish(SimpleNamespace(state="starting", generation=None, message=""))
    assert receiver.recv(4096).decode().splitlines() == ["STATUS=starting, generation -", "WATCHDOG=1"]
    notifier.publish(SimpleNamespace(state="running", generation=3, message="a\nb"))
    assert receiver.recv(4096).decode().splitlines() == ["READY=1", "STATUS=running, generation 3: a b"]
    notifier.publish(SimpleNamespace(state="stopping", generation=3, message=""))
    assert receiver.recv(4096).decode().splitlines() == ["STOPPING=1", "STATUS=stopping, generation 3"]
    assert not Notifier({}).enabled and Notifier({}).send("READY=1") is False
    other = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert other.interval_s is None  # a watchdog meant for another process
