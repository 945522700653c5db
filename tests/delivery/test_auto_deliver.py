"""auto_deliver: what the loop calls after every verdict. Only a clean pass with `auto = "passed"` and
a remote is delivered; nothing it meets (a verdict, a dead remote, a failing API) makes it raise."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from supervisor.store.instance import ContributeSettings
from supervisor.store.projects import ProjectConfig
from supervisor.store.tasks.models import TaskState
from supervisor.work.delivery import auto_deliver
from tests.delivery.helpers import Answer, LocalServer, closed_port, git, make_bare, make_project, make_task

PROJECT = ProjectConfig(name="calc", source="/src/calc")
ENV = {"GH_TOKEN": "ghp_auto"}


@pytest.fixture
def project(tmp_path: Path):
    return make_project(tmp_path / "p")


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return make_bare(tmp_path / "remote.git")


def _auto(remote: Path, **extra: object) -> ContributeSettings:
    return ContributeSettings(auto="passed", remote=str(remote), **extra)


def test_never_is_the_default_and_delivers_nothing(project, remote: Path) -> None:
    settings = ContributeSettings(remote=str(remote))
    outcome = auto_deliver(make_task(project), PROJECT, project.mirror, settings)
    assert outcome.action == "skipped" and '"never"' in outcome.reason
    assert git(remote, "for-each-ref") == ""


def test_a_clean_pass_is_pushed(project, remote: Path) -> None:
    outcome = auto_deliver(make_task(project), PROJECT, project.mirror, _auto(remote))
    assert outcome.action == "pushed" and outcome.error is None and outcome.push is not None
    assert git(remote, "rev-parse", "refs/heads/ouroboros/task-7") == project.result


def test_a_clean_pass_is_pushed_and_gets_a_pull_request(project, remote: Path) -> None:
    with LocalServer() as server:
        settings = _auto(remote, github_api=server.url, github_repo="o/calc", token_env="GH_TOKEN")
        outcome = auto_deliver(make_task(project), PROJECT, project.mirror, settings, environ=ENV)
    assert outcome.action == "opened-pr" and outcome.pull_request is not None and outcome.pull_request.number == 12
    assert server.requests[0].body["head"] == "ouroboros/task-7" and server.requests[0].body["base"] == "main"
    assert git(remote, "rev-parse", "refs/heads/ouroboros/task-7") == project.result


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"outcome": "failed"}, "only a passed task"),
        ({"outcome": "gave-up"}, "only a passed task"),
        ({"outcome": "infrastructure"}, "only a passed task"),
        ({"needs_review": True}, "needs review \\(touches test_calc.py\\)"),
        ({"outcome": "passed", "state": TaskState.QUEUED}, "only a passed task"),
        ({"outcome": None, "result": None, "state": TaskState.CANCELLED}, "only a passed task"),
    ],
)
def test_nothing_but_a_clean_pass_is_ever_delivered(project, remote: Path, kwargs: dict, words: str) -> None:
    with LocalServer() as server:
        settings = _auto(remote, github_api=server.url, github_repo="o/calc", token_env="GH_TOKEN")
        outcome = auto_deliver(make_task(project, **kwargs), PROJECT, project.mirror, settings, environ=ENV)
    assert outcome.action == "skipped" and outcome.push is None
    assert outcome.reason.startswith("not delivered") and re.search(words, outcome.reason)
    assert git(remote, "for-each-ref") == "" and server.requests == []


def test_no_remote_means_nothing_to_do(project) -> None:
    outcome = auto_deliver(make_task(project), PROJECT, project.mirror, ContributeSettings(auto="passed"))
    assert outcome.action == "skipped" and "no [contribute] remote" in outcome.reason


def test_a_dead_remote_is_reported_not_raised(project) -> None:
    settings = ContributeSettings(auto="passed", remote=f"https://127.0.0.1:{closed_port()}/o/r.git")
    outcome = auto_deliver(make_task(project), PROJECT, project.mirror, settings)
    assert outcome.action == "failed" and outcome.error and "does not answer" in outcome.error


def test_a_failing_api_after_the_push_is_reported_not_raised(project, remote: Path) -> None:
    with LocalServer(Answer(status=500, body={"message": "boom"})) as server:
        settings = _auto(remote, github_api=server.url, github_repo="o/calc", token_env="GH_TOKEN")
        outcome = auto_deliver(make_task(project), PROJECT, project.mirror, settings, environ=ENV)
    assert outcome.action == "pushed" and outcome.error and "answered 500 (boom)" in outcome.error
    no_token = auto_deliver(
        make_task(project),
        PROJECT,
        project.mirror,
        _auto(remote, github_repo="o/calc", token_env="GH_TOKEN"),
        environ={},
    )
    assert no_token.action == "pushed" and no_token.error and "GH_TOKEN, which is not set" in no_token.error
