"""Errors a person can act on: whose files, what to run; socket permission vs no engine; atomic init."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import supervisor.store.instance_init as init_module
from supervisor.base.errors import ConfigError, describe_permission_error
from supervisor.store.instance import Instance
from supervisor.store.instance_init import STAGING_PREFIX, init_instance
from tests.operator.conftest import as_nobody, cli


def test_permission_message_names_owner_mode_user_and_fix(tmp_path: Path) -> None:
    target = tmp_path / "locked" / "decisions.jsonl"
    target.parent.mkdir()
    message = describe_permission_error(PermissionError(13, "Permission denied", str(target)))
    assert str(target) in message and "owned by" in message and "mode" in message and "chown" in message


@pytest.mark.parametrize("command", [["rollback"], ["reject", "1-1"], ["candidates"], ["gate", "HEAD"]])
def test_commands_as_another_user_say_whose_files_and_what_to_run(instance: Instance, command: list[str]) -> None:
    # The instance belongs to root (it ran init); an operator account runs the command.
    done = as_nobody(*command, "--home", str(instance.home))
    assert done.returncode in (1, 3), done
    assert "Traceback" not in done.stderr + done.stdout
    assert "permission denied on" in done.stderr and "owned by root" in done.stderr and "sudo -u root" in done.stderr


def test_docker_socket_permission_is_told_apart_from_a_missing_engine(tmp_path: Path) -> None:
    if not Path("/var/run/docker.sock").exists():
        pytest.skip("no local Docker socket to be refused by")
    refused = as_nobody("image", "show", "--json")
    error = json.loads(refused.stdout)["error"]
    assert refused.returncode == 3 and error["kind"] == "EngineAccessError" and "usermod -aG" in error["message"]
    absent = as_nobody("image", "show", "--json", env={"DOCKER_HOST": "unix:///nonexistent-ouroboros/no.sock"})
    error = json.loads(absent.stdout)["error"]
    assert absent.returncode == 3 and error["kind"] == "EngineUnavailableError"


def test_a_failed_init_leaves_nothing_and_the_next_one_works(tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "srv" / "ouroboros"

    def broken(*_args):
        raise ConfigError("disk full (simulated)")

    monkeypatch.setattr(init_module, "_seed_memory", broken)
    with pytest.raises(ConfigError, match="simulated"):
        init_instance(home)
    assert not home.exists() and list(home.parent.iterdir()) == []
    monkeypatch.undo()
    assert init_instance(home).config().agent.memory_mb == 1024


def test_init_finishes_into_an_empty_directory_and_clears_a_killed_attempt(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    dead = tmp_path / f"{STAGING_PREFIX}home.999999999"  # a pid that cannot run
    (dead / "repo.git").mkdir(parents=True)
    _, out = cli("init", str(home), "--no-gate")
    assert "generation 0 not gated yet" in out and (home / "repo.git").is_dir()
    assert not dead.exists()
    _, again = cli("init", str(home), "--no-gate", code=1)
    assert "not an empty directory" in again


def test_cli_permission_error_on_init_target(tmp_path: Path) -> None:
    parent = tmp_path / "rootonly"
    parent.mkdir(mode=0o755)
    done = as_nobody("init", str(parent / "home"), "--no-gate", "--json")
    error = json.loads(done.stdout)["error"]
    assert done.returncode == 3 and "owned by root" in error["message"] and not (parent / "home").exists()
    assert os.listdir(parent) == []
