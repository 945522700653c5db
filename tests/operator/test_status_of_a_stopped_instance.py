"""`supervisor status` says what is so: a supervisor that holds no lock is stopped, whatever its last
status.json says, and a stopped instance is never "on probation" (probation is watched only by a
running supervisor); "passed" is said only of the generation that passed."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from supervisor.store.instance import Instance
from supervisor.store.states import SupervisorState
from supervisor.store.status_file import Status, StatusFile
from tests.operator.conftest import cli, cli_json


@contextmanager
def _supervisor_lock(instance: Instance) -> Iterator[None]:
    """The lock a running supervisor holds (HOME/run/supervisor.lock), held by this test instead."""
    instance.run_dir.mkdir(parents=True, exist_ok=True)
    with open(instance.run_dir / "supervisor.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield


def _record(instance: Instance, state: SupervisorState, probation: str, generation: int | None = None) -> None:
    """status.json as a supervisor left it (a clean stop writes stopping, then stopped)."""
    instance.status_file.parent.mkdir(parents=True, exist_ok=True)
    status = Status(state=state, generation=generation, commit="a" * 40, probation=probation)
    assert StatusFile(instance.status_file).write(status)


@pytest.mark.parametrize("left", [SupervisorState.RUNNING, SupervisorState.STOPPING, SupervisorState.STOPPED])
def test_a_stopped_instance_is_stopped_and_not_on_probation(instance: Instance, left: SupervisorState) -> None:
    """RUNNING: the file a kill -9 leaves; STOPPING, STOPPED: what a clean stop writes."""
    home = str(instance.home)
    _record(instance, left, "on probation")
    shown = cli_json("status", "--home", home, code=3)
    assert shown["running"] is False and shown["state"] == "stopped"
    assert shown["probation"] == "n/a"
    text = cli("status", "--home", home, code=3)[1]
    assert "on probation" not in text and "state       stopped" in text


def test_a_running_supervisor_still_shows_its_probation(instance: Instance) -> None:
    home = str(instance.home)
    _record(instance, SupervisorState.RUNNING, "on probation", generation=0)
    with _supervisor_lock(instance):
        shown = cli_json("status", "--home", home)
        assert shown["state"] == "running" and shown["probation"] == "on probation"
        _record(instance, SupervisorState.STOPPING, "on probation", generation=0)
        stopping = cli_json("status", "--home", home)
        assert stopping["state"] == "stopping" and stopping["probation"] == "n/a"  # the agent is being stopped


def test_passed_is_said_only_of_the_generation_that_passed(instance: Instance) -> None:
    home = str(instance.home)
    _record(instance, SupervisorState.STOPPED, "passed", generation=None)  # main's generation (init --no-gate)
    assert cli_json("status", "--home", home, code=3)["probation"] == "passed"
    _record(instance, SupervisorState.STOPPED, "passed", generation=5)  # main moved since (a rollback by hand)
    assert cli_json("status", "--home", home, code=3)["probation"] == "n/a"
