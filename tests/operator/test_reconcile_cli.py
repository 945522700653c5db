"""`supervisor reconcile`: this instance's leftovers by default, --dry-run lists, --all spans instances."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from sandbox import ContainerSpec
from supervisor.store.instance_init import init_instance
from tests.operator.conftest import cli, cli_json

pytestmark = pytest.mark.docker


def _leftover(engine, image: str, instance: str) -> str:
    spec = ContainerSpec(
        image=image, command=["sleep", "300"], run_id=f"run-{uuid.uuid4().hex[:8]}", role="probe", instance=instance
    )
    return engine.start(spec).id


def test_reconcile_is_scoped_lists_and_dry_runs(tmp_path: Path, docker_engine, agent_image) -> None:
    mine, other = init_instance(tmp_path / "mine"), init_instance(tmp_path / "other")
    try:
        my_container = _leftover(docker_engine, agent_image, mine.instance_id)
        other_container = _leftover(docker_engine, agent_image, other.instance_id)
        dry = cli_json("reconcile", "--home", str(mine.home), "--dry-run")
        assert dry["dry_run"] and dry["scope"] == "instance" and dry["instance"] == mine.instance_id
        assert [row["id"] for row in dry["containers"]] == [my_container]
        assert docker_engine.exists(my_container)
        everything = cli_json("reconcile", "--all", "--dry-run")
        assert {my_container, other_container} <= {row["id"] for row in everything["containers"]}
        _, text = cli("reconcile", "--home", str(mine.home))
        assert "removed 1 container(s)" in text and my_container[:12] in text
        assert not docker_engine.exists(my_container) and docker_engine.exists(other_container)
    finally:
        docker_engine.reconcile(instance=mine.instance_id)
        docker_engine.reconcile(instance=other.instance_id)


def test_reconcile_refuses_while_the_instance_runs(tmp_path: Path, docker_engine) -> None:
    import fcntl

    instance = init_instance(tmp_path / "home")
    instance.run_dir.mkdir()
    with open(instance.run_dir / "supervisor.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _, text = cli("reconcile", "--home", str(instance.home), code=1)
    assert "a supervisor runs" in text
