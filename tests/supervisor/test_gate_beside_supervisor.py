"""`supervisor gate` and a supervisor on one repository: a supervisor that starts while an operator's
gate runs (it clears its scratch, removes its instance's containers) does not touch that gate, and a
gate killed before it cleaned up is tidied by the next one. Real git, the real runner, fake engine."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
from click.testing import CliRunner

from sandbox.fake import FakeEngine, passing_gate
from supervisor.cli import OuroborosGroup
from supervisor.cli.gate_cmds import COMMANDS
from supervisor.gate.gatekeeper import Gatekeeper
from supervisor.gate.passes import SRC_DIR
from supervisor.gate.scratch import GATE_LABEL_SUFFIX, GATE_RUNS, own_scratch
from supervisor.loop.event_loop import Supervisor
from tests.supervisor.fakes import fake_instance, gatekeeper_of

ROOT = Path(__file__).resolve().parents[2]


@click.group(cls=OuroborosGroup)
def cli() -> None:
    """The gate commands."""


for _command in COMMANDS:
    cli.add_command(_command)


def test_a_supervisor_starting_mid_gate_leaves_the_operators_gate_alone(tmp_path, monkeypatch):
    engine = FakeEngine()
    instance = fake_instance(tmp_path / "home", engine)
    seen: dict[str, object] = {}

    def gate(spec):
        if "started" not in seen:
            # A supervisor starts on the same repository now: recover() clears its scratch area,
            # reconcile removes every container of its instance.
            seen["started"] = Supervisor(instance, engine, "fake-image", stop_when=lambda s: s.agent is not None).run()
            seen["removed"] = engine.reconcile(instance=instance.instance_id)
            source = Path(next(m.source for m in spec.mounts if m.target == SRC_DIR))
            seen["files_left"] = sorted(p.name for p in source.iterdir()) if source.is_dir() else []
            seen["instance"] = spec.instance
        return passing_gate(spec)

    engine.gate = gate
    monkeypatch.setattr(
        "supervisor.cli.gate_cmds._gatekeeper",
        lambda repo: Gatekeeper(
            repo or instance.repo, engine=engine, image="fake-image", instance=instance.instance_id
        ),
    )
    result = CliRunner().invoke(cli, ["gate", "--home", str(instance.home), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["passed"]
    assert seen["started"] == 0  # the gate held no lock the supervisor needed
    assert "agent" in seen["files_left"] and "gate.toml" in seen["files_left"]  # its export survived recover()
    assert str(seen["instance"]).startswith(
        instance.instance_id + GATE_LABEL_SUFFIX + "-"
    )  # no supervisor reconciles it
    state = gatekeeper_of(instance, engine).state_dir
    assert list((state / GATE_RUNS).iterdir()) == []  # its own folder is gone once it is done


HOLD = """
import sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from supervisor.gate.passes import SRC_DIR
from supervisor.gate.scratch import own_scratch
with own_scratch(Path({state!r}), print) as folder:
    (folder / "tmp" ).mkdir()
    (folder / "tmp" / "export").write_text("a gate's files")
    print(folder, flush=True)
    time.sleep(60)
"""


def test_a_killed_gates_folder_is_removed_by_the_next_gate_and_a_running_ones_is_not(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    children, folders = [], []
    for _ in range(2):
        child = subprocess.Popen(
            [sys.executable, "-c", HOLD.format(root=str(ROOT), state=str(state))], stdout=subprocess.PIPE, text=True
        )
        folders.append(Path(child.stdout.readline().strip()))
        children.append(child)
    dead, alive = children
    dead.send_signal(signal.SIGKILL)  # kill -9 mid-gate: nothing of its own cleans up
    dead.wait(10)
    assert folders[0].exists()
    try:
        with own_scratch(state, print) as mine:
            assert not folders[0].exists()  # no living owner: removed
            assert (folders[1] / "tmp" / "export").exists()  # still in use: left alone
            assert mine.parent == state / GATE_RUNS
        assert not mine.exists()
    finally:
        alive.send_signal(signal.SIGKILL)
        alive.wait(10)
    time.sleep(0.05)
    with own_scratch(state, print):
        assert not folders[1].exists()
