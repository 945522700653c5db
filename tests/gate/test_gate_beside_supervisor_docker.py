"""`supervisor gate` on the real engine while a supervisor starts on the same repository: the start
takes the repository lock (the gate holds none), clears its scratch and removes its instance's
containers; the operator's gate, in its own folder under its own label, still reaches its verdict."""

from __future__ import annotations

import json
import threading
import time

import click
import pytest
from click.testing import CliRunner

from sandbox.spec import INSTANCE_LABEL
from supervisor.base.repo_lock import RepoLock
from supervisor.cli import OuroborosGroup
from supervisor.cli.gate_cmds import COMMANDS
from supervisor.gate.gatekeeper import Gatekeeper
from supervisor.gate.scratch import GATE_LABEL_SUFFIX
from tests.gate.repo_factory import sample_files

SLOW_TEST = "import time\n\n\ndef test_slow():\n    time.sleep(4)\n"


@click.group(cls=OuroborosGroup)
def cli() -> None:
    """The gate commands."""


for _command in COMMANDS:
    cli.add_command(_command)


@pytest.mark.docker
def test_a_supervisor_starting_mid_gate_does_not_spoil_the_operators_gate(
    gatekeeper_factory, docker_engine, sandbox_instance, monkeypatch, tmp_path
):
    gatekeeper = gatekeeper_factory(files={**sample_files(), "agent/tests/test_slow.py": SLOW_TEST})
    repo = gatekeeper.common
    monkeypatch.setattr(
        "supervisor.cli.gate_cmds._gatekeeper",
        lambda given: Gatekeeper(
            given or repo, engine=docker_engine, image=gatekeeper.gate_runner.image, instance=sandbox_instance
        ),
    )
    outcome: dict[str, object] = {}

    def gate() -> None:
        result = CliRunner().invoke(cli, ["gate", "main", "--repo", str(repo), "--json"])
        outcome["code"], outcome["output"] = result.exit_code, result.output

    thread = threading.Thread(target=gate, daemon=True)
    thread.start()
    prefix = sandbox_instance + GATE_LABEL_SUFFIX + "-"  # then the gate run's folder name

    def gate_boxes() -> list[dict[str, str]]:
        return [box for box in docker_engine.managed() if box.get(INSTANCE_LABEL, "").startswith(prefix)]

    try:
        deadline = time.monotonic() + 60
        while not gate_boxes() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert gate_boxes(), "the gate container never started"
        # What `supervisor start` does before anything else, on the same repository:
        lock = RepoLock(repo).acquire(tmp_path / "home", attempts=1)  # the gate holds no lock it needs
        try:
            Gatekeeper(
                repo, engine=docker_engine, image=gatekeeper.gate_runner.image, instance=sandbox_instance
            ).recover()
            docker_engine.reconcile(instance=sandbox_instance)
        finally:
            lock.release()
        thread.join(120)
        assert outcome.get("code") == 0, outcome
        verdict = json.loads(str(outcome["output"]))
        assert verdict["passed"] and verdict["test_ids"].get("agent.tests.test_slow::test_slow") == "passed"
    finally:
        thread.join(120)
        for box in gate_boxes():
            docker_engine.remove_managed(box["id"])
    assert not any((repo / "ouroboros" / "gate-runs").iterdir())
