"""A `supervisor gate` killed -9 leaves its containers running (no supervisor reconciles a gate's
label, and nothing of the dead gate is left to stop them): the next gate removes exactly those,
never a running gate's nor a supervisor's. Real processes hold the folders' locks; fake engine."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from sandbox.fake import FakeEngine
from sandbox.spec import ContainerSpec
from supervisor.gate.scratch import gate_label, own_scratch

ROOT = Path(__file__).resolve().parents[2]
HOLD = """
import sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from supervisor.gate.scratch import own_scratch
with own_scratch(Path({state!r}), print) as folder:
    print(folder, flush=True)
    time.sleep(60)
"""
INSTANCE = "inst-1"


def _gate(state: Path) -> tuple[subprocess.Popen[str], Path]:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD.format(root=str(ROOT), state=str(state))], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    return child, Path(child.stdout.readline().strip())


def _container(engine: FakeEngine, instance: str) -> str:
    spec = ContainerSpec(image="fake", command=["true"], run_id=instance, role="gate", instance=instance)
    return engine.start(spec).id


def _reap(engine: FakeEngine):  # what `supervisor gate` passes
    return lambda run: engine.reconcile(instance=gate_label(INSTANCE, run))


def test_the_next_gate_removes_a_killed_gates_containers_and_no_others(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    engine = FakeEngine()
    (dead, dead_folder), (alive, alive_folder) = _gate(state), _gate(state)
    try:
        dead_box = _container(engine, gate_label(INSTANCE, dead_folder.name))
        alive_box = _container(engine, gate_label(INSTANCE, alive_folder.name))
        supervisors_box = _container(engine, INSTANCE)
        dead.send_signal(signal.SIGKILL)
        dead.wait(10)
        with own_scratch(state, print, reap=_reap(engine)):
            assert set(engine.containers) == {alive_box, supervisors_box}  # dead_box is gone
            assert dead_box not in engine.containers and not dead_folder.exists()
            assert alive_folder.exists()
    finally:
        alive.send_signal(signal.SIGKILL)
        alive.wait(10)


def test_an_engine_error_keeps_the_dead_gates_folder_for_the_next_try(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    engine = FakeEngine()
    dead, folder = _gate(state)
    box = _container(engine, gate_label(INSTANCE, folder.name))
    dead.send_signal(signal.SIGKILL)
    dead.wait(10)
    warnings: list[str] = []
    engine.down = True
    with own_scratch(state, warnings.append, reap=_reap(engine)):
        assert folder.exists() and warnings  # without the folder nothing would name that run again
    engine.down = False
    with own_scratch(state, warnings.append, reap=_reap(engine)):
        assert not folder.exists() and box not in engine.containers
