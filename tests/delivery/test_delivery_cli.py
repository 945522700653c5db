"""`task export|push|pr` through click, on a real instance folder, project mirror and bare remote; the
queue is a minimal in-memory one (the SQLite queue has its own tests)."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from supervisor.cli import OuroborosGroup, delivery_cmds
from supervisor.store.instance import Instance
from supervisor.store.projects import ProjectConfig, ProjectRegistry
from tests.delivery.helpers import LocalServer, MemoryQueue, git, make_bare, make_project, make_task


@click.group(cls=OuroborosGroup)
def task() -> None:
    """The `task` group as the lead attaches the delivery commands to it."""


for _command in delivery_cmds.TASK_DELIVERY_COMMANDS:
    task.add_command(_command)


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path / "home"
    (home / "repo.git").mkdir(parents=True)
    remote = make_bare(tmp_path / "remote.git")
    (home / "ouroboros.toml").write_text(f'[contribute]\nremote = "{remote}"\n')
    registry = ProjectRegistry(Instance(home).projects)
    registry.save(ProjectConfig(name="calc", source=str(tmp_path / "src")))
    project = make_project(tmp_path / "p", mirror=registry.mirror("calc"))
    queue = MemoryQueue(
        [make_task(project), make_task(project, task_id=8, outcome="failed"), make_task(project, task_id=9)]
    )
    monkeypatch.setattr(delivery_cmds, "_open_queue", lambda instance: queue)
    return home, project, remote, queue


def _run(*args: str, code: int = 0, env: dict[str, str] | None = None):
    result = CliRunner().invoke(task, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def test_export_writes_the_patch_to_a_file_or_stdout(setup, tmp_path: Path) -> None:
    home, project, _, queue = setup
    out = tmp_path / "t7.patch"
    report = json.loads(_run("export", "7", "--patch", str(out), "--home", str(home), "--json").output)
    assert report["bytes"] == out.stat().st_size and report["task_id"] == 7 and queue.closed
    piped = _run("export", "7", "--patch", "-", "--home", str(home)).stdout_bytes
    assert piped == out.read_bytes() and b"+    return a + b" in piped
    refused = _run("export", "7", "--patch", "-", "--json", "--home", str(home), code=2)
    assert "give --patch FILE" in refused.output


def test_push_delivers_a_passed_task(setup) -> None:
    home, project, remote, _ = setup
    report = json.loads(_run("push", "7", "--home", str(home), "--json").output)
    assert report["status"] == "created" and report["branch"] == "ouroboros/task-7" and report["remote"] == str(remote)
    assert git(remote, "rev-parse", "refs/heads/ouroboros/task-7") == project.result
    text = _run("push", "7", "--home", str(home)).output
    assert text.startswith("pushed task 7") and "up-to-date" in text


def test_push_refuses_a_failed_task_with_one_clear_line(setup) -> None:
    home, project, remote, _ = setup
    text = _run("push", "8", "--home", str(home), code=1).output
    assert "Error: task 8 is failed" in text and "--force" in text and "Traceback" not in text
    error = json.loads(_run("push", "8", "--home", str(home), "--json", code=1).output)["error"]
    assert error["kind"] == "DeliveryError" and error["exit_code"] == 1
    assert git(remote, "for-each-ref") == ""
    forced = _run("push", "8", "--force", "--home", str(home)).output
    assert "forced: the verdict was failed" in forced


def test_push_to_another_remote_given_as_a_relative_path(setup, tmp_path: Path, monkeypatch) -> None:
    home, project, remote, _ = setup
    make_bare(tmp_path / "elsewhere.git")
    monkeypatch.chdir(tmp_path)
    _run("push", "9", "--remote", "elsewhere.git", "--home", str(home))
    assert git(tmp_path / "elsewhere.git", "rev-parse", "refs/heads/ouroboros/task-9") == project.result
    assert git(remote, "for-each-ref") == ""


def test_pr_opens_a_pull_request_with_the_token_from_the_environment(setup) -> None:
    home, _, _, _ = setup
    with LocalServer() as server:
        config = home / "ouroboros.toml"
        config.write_text(
            config.read_text() + f'github_api = "{server.url}"\ngithub_repo = "o/calc"\ntoken_env = "GH_TOKEN"\n'
        )
        report = json.loads(_run("pr", "7", "--home", str(home), "--json", env={"GH_TOKEN": "ghp_cli"}).output)
        refused = _run("pr", "8", "--home", str(home), code=1, env={"GH_TOKEN": "ghp_cli"}).output
    assert report["number"] == 12 and report["head"] == "ouroboros/task-7"
    assert len(server.requests) == 1 and server.requests[0].headers["Authorization"] == "Bearer ghp_cli"
    assert "task 8 is failed" in refused


def test_an_unknown_task_is_a_clear_error(setup) -> None:
    home, _, _, _ = setup
    assert "no task 99" in _run("push", "99", "--home", str(home), code=1).output
