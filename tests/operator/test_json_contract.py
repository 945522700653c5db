"""The JSON contract (docs/json.md): --json and --home everywhere, same keys in every state, UTC
timestamps, errors as JSON, `status` exit codes, `config check`."""

from __future__ import annotations

import fcntl
from datetime import datetime
from pathlib import Path

import click

from supervisor.cli import main
from supervisor.cli.contract import StatusOut
from supervisor.cli.json_reference import render
from supervisor.gate.gatekeeper import Gatekeeper
from supervisor.store.instance import Instance
from supervisor.store.status_file import Status, StatusFile
from tests.operator.conftest import ROOT, cli, cli_json

# init takes DIRECTORY (the instance to make); the image belongs to the engine, not to an instance.
NO_HOME = {"init", "image build", "image show"}


def _leaves(group: click.Group, prefix: str = ""):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _leaves(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


def test_docs_json_is_generated_from_the_models() -> None:
    assert (ROOT / "docs" / "json.md").read_text() == render(), "regenerate: bash scripts/docs.sh"


def test_every_command_has_json_and_home() -> None:
    for name, command in _leaves(main):
        options = {opt for param in command.params for opt in getattr(param, "opts", [])}
        assert "--json" in options, f"`supervisor {name}` has no --json"
        if name not in NO_HOME:
            assert "--home" in options, f"`supervisor {name}` has no --home"


def _hold_lock(instance: Instance):
    instance.run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(instance.run_dir / "supervisor.lock", "a+")
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return handle


def test_status_has_the_same_keys_in_every_state_and_exits_3_when_stopped(instance: Instance) -> None:
    home = str(instance.home)
    never = cli_json("status", "--home", home, code=3)
    assert never["state"] == "never started" and never["running"] is False
    handle = _hold_lock(instance)
    StatusFile(instance.status_file).write(Status(state="running", generation=0, commit="a" * 40))
    try:
        running = cli_json("status", "--home", home)
    finally:
        handle.close()
    stopped = cli_json("status", "--home", home, code=3)
    assert running["running"] is True and running["state"] == "running" and running["generation"] == 0
    assert stopped["state"] == "stopped" and stopped["pid"] is None
    keys = set(StatusOut.model_fields)
    assert set(never) == set(running) == set(stopped) == keys
    for stamp in (running["started_at"], running["checked_at"], never["checked_at"]):
        assert datetime.fromisoformat(stamp).utcoffset().total_seconds() == 0
    assert "state       stopped" in cli("status", "--home", home, code=3)[1]


def test_errors_are_json_under_json_with_their_exit_code(tmp_path: Path, instance: Instance) -> None:
    missing = cli_json("status", "--home", str(tmp_path / "nowhere"), code=1)
    assert set(missing) == {"error"} and "not an Ouroboros instance" in missing["error"]["message"]
    assert missing["error"]["exit_code"] == 1
    usage = cli_json("log", "-n", "0", "--home", str(instance.home), code=2)
    assert usage["error"]["kind"] == "usage"
    unknown = cli_json("show", "9-9", "--home", str(instance.home), code=1)
    assert "no candidate 9-9" in unknown["error"]["message"]
    assert cli("show", "9-9", "--home", str(instance.home), code=1)[1].startswith("Error: ")


def test_gate_commands_take_home_and_print_utc_timestamps(instance: Instance) -> None:
    gatekeeper = Gatekeeper(instance.repo, instance=instance.instance_id)
    record = gatekeeper.create_candidate()
    rows = cli_json("candidates", "--home", str(instance.home))
    assert [row["id"] for row in rows] == [record.id]
    assert datetime.fromisoformat(rows[0]["created_at"]).utcoffset().total_seconds() == 0
    assert "age" not in rows[0] and rows[0]["summary"] is None
    shown = cli_json("show", record.id, "--home", str(instance.home))
    assert shown["id"] == record.id and shown["gate"] is None and "worktree" not in shown
    assert cli_json("log", "--home", str(instance.home)) == []
    assert cli_json("verify-log", "--home", str(instance.home))["ok"] is True


def test_config_check_validates_both_files_without_starting_anything(instance: Instance, tmp_path: Path) -> None:
    good = cli_json("config", "check", "--home", str(instance.home))
    assert good["ok"] and [f["kind"] for f in good["files"]] == ["ouroboros.toml", "gate.toml"]
    instance.config_path.write_text(instance.config_path.read_text() + "\n[agent2]\nmemory_mb = 5\n")
    bad = cli_json("config", "check", "--home", str(instance.home), code=1)
    assert not bad["files"][0]["ok"] and "agent2" in bad["files"][0]["errors"][0]
    gate = tmp_path / "gate.toml"
    gate.write_text("[gate]\ndeadline_s = -1\n")
    text = cli("config", "check", "--home", str(instance.home), "--gate", str(gate), code=1)[1]
    assert "INVALID" in text and "deadline_s" in text
    assert not (instance.run_dir / "supervisor.lock").exists()


def test_status_after_init_shows_main_and_its_generation(instance: Instance) -> None:
    from supervisor.base.git_ops import MAIN_REF, Git

    status = cli_json("status", "--home", str(instance.home), code=3)
    assert status["commit"] == Git(instance.repo).ref_value(MAIN_REF)
    assert status["generation"] is None  # not gated yet (init --no-gate): no gen/0 tag


def test_logs_json_is_one_object_per_line(instance: Instance) -> None:
    import json

    instance.logs.mkdir(parents=True, exist_ok=True)
    instance.agent_log.write_text("first\nsecond \x1b[31mred\x1b[0m\nthird\n")
    _, out = cli("logs", "--home", str(instance.home), "-n", "2", "--json")
    assert [json.loads(line)["line"] for line in out.splitlines()] == ["second \x1b[31mred\x1b[0m", "third"]


def test_gate_without_an_engine_is_exit_3_not_a_rejection(instance: Instance, monkeypatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent-ouroboros/docker.sock")
    error = cli_json("gate", "--home", str(instance.home), code=3)["error"]
    assert error["kind"] == "EngineUnavailableError"
