"""open_pull_request against a local server playing GitHub: exactly what is sent, what each error
status becomes, and a hostile summary rendered inert."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from supervisor.store.instance import ContributeSettings
from supervisor.store.projects import ProjectConfig
from supervisor.work.delivery import DeliveryError, open_pull_request
from supervisor.work.pull_request import MAX_SUMMARY, ZWSP, pull_request_body
from tests.delivery.helpers import Answer, LocalServer, closed_port, make_project, make_task

TOKEN = "ghp_prT0ken"
ENV = {"GH_TOKEN": TOKEN}
PROJECT = ProjectConfig(name="calc", source="/src/calc", default_branch="trunk")
HOSTILE = (
    "@everyone look <script>alert(1)</script> <img src=x onerror=alert(1)> fixes #1 and o/r#2\n"
    "# A heading\n[click](http://evil.test) ![pixel](http://track.test/p.png) `code` **bold**\n"
    "\x1b[2J\x1b]52;c;ZXZpbA==\x07 \u202eright-to-left\u202c zero\u200bwidth <!-- hidden -->\n"
)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):
    return make_project(tmp_path_factory.mktemp("p"))


def _settings(server: LocalServer, **extra: object) -> ContributeSettings:
    return ContributeSettings(github_api=server.url, github_repo="octo/calc", token_env="GH_TOKEN", **extra)


def test_exactly_this_is_sent_and_the_answer_read(project) -> None:
    with LocalServer() as server:
        report = open_pull_request(
            make_task(project), PROJECT, _settings(server), head_branch="ouroboros/task-7", environ=ENV
        )
    assert report.number == 12 and report.url == "https://github.test/o/r/pull/12"
    assert (report.head, report.base, report.repo) == ("ouroboros/task-7", "trunk", "octo/calc")
    [request] = server.requests
    assert (request.method, request.path) == ("POST", "/repos/octo/calc/pulls")
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Accept"] == "application/vnd.github+json"
    assert request.headers["X-GitHub-Api-Version"] == "2022-11-28"
    assert set(request.body) == {"title", "head", "base", "body"}
    assert request.body["title"] == "add() subtracts"
    assert (request.body["head"], request.body["base"]) == ("ouroboros/task-7", "trunk")
    body = request.body["body"]
    assert "**Verdict: passed**" in body and "test\\_calc.py::test\\_add" in body
    assert "- Regressions: none" in body and "Tokens used: 12345" in body
    assert "> Fixed add: it subtracted." in body and "its own words" in body
    assert TOKEN not in body


def test_the_base_branch_setting_wins_over_the_project_default(project) -> None:
    with LocalServer() as server:
        open_pull_request(
            make_task(project), PROJECT, _settings(server, base_branch="release"), head_branch="me:b", environ=ENV
        )
    assert server.requests[0].body["base"] == "release" and server.requests[0].body["head"] == "me:b"


def test_a_hostile_summary_and_title_are_rendered_inert(project) -> None:
    summary = HOSTILE + "A" * 1_000_000
    task = make_task(
        project, summary=summary, title="@octocat <b>pwn</b> #5", fail_to_pass_passed=["t::x[@admin](http://e)"]
    )
    with LocalServer() as server:
        open_pull_request(task, PROJECT, _settings(server), head_branch="b", environ=ENV)
    sent = server.requests[0].body
    body, title = sent["body"], sent["title"]
    assert len(body) < MAX_SUMMARY + 3000 and "…(cut)" in body
    for forbidden in ("<script", "<img", "<!--", "@everyone", "@admin", "#1", "#2", "\x1b", "\x07", "\u202e"):
        assert forbidden not in body, forbidden
    assert not re.search(r"(?<!\\)\]\(", body)  # no link or image: every ] is escaped
    assert f"@{ZWSP}everyone" in body and "&lt;script&gt;" in body and "\\[click\\]" in body
    assert "\n> #" + ZWSP + " A heading" in body  # no heading: quoted, and '#' no longer starts one
    summary_part = body.split("not checked by the supervisor)", 1)[1]
    assert all(line.startswith(">") for line in summary_part.strip("\n").split("\n"))
    assert "@octocat" not in title and f"@{ZWSP}octocat" in title and "#5" not in title


def test_a_body_without_a_summary_or_with_failures_says_so(project) -> None:
    task = make_task(project, outcome="failed", summary=None)
    task.verdict.tests.regressions = ["test_calc.py::test_sub"]  # type: ignore[union-attr]
    body = pull_request_body(task, PROJECT)
    assert "**Verdict: failed**" in body and "- Regressions: 1" in body and "test\\_sub" in body
    assert "> (no summary)" in body


@pytest.mark.parametrize(
    ("status", "answer", "words"),
    [
        (401, {"message": "Bad credentials"}, "refused the token \\(401 Bad credentials\\).*renew it"),
        (403, {"message": "Resource not accessible"}, "403 Resource not accessible.*pull requests: write"),
        (404, {"message": "Not Found"}, "no repository octo/calc this token can see \\(404.*github_repo"),
        (
            422,
            {"message": "Validation Failed", "errors": [{"message": "A pull request already exists for octo:b."}]},
            "already exists on octo/calc.*nothing to do",
        ),
        (
            422,
            {"message": "Validation Failed", "errors": [{"field": "head", "code": "invalid"}]},
            "422 Validation Failed.*push the branch first",
        ),
        (500, None, "answered 500 \\(no explanation\\).*try again later"),
    ],
)
def test_error_statuses_become_clear_errors(project, status: int, answer: object, words: str) -> None:
    with LocalServer(Answer(status=status, body=answer)) as server:
        with pytest.raises(DeliveryError, match=words) as caught:
            open_pull_request(make_task(project), PROJECT, _settings(server), head_branch="b", environ=ENV)
    assert TOKEN not in str(caught.value)


def test_a_201_without_a_pull_request_is_an_error(project) -> None:
    with LocalServer(Answer(status=201, body={"nope": 1})) as server:
        with pytest.raises(DeliveryError, match="without a pull request number"):
            open_pull_request(make_task(project), PROJECT, _settings(server), head_branch="b", environ=ENV)


def test_network_failures_are_clear_and_bounded(project) -> None:
    settings = ContributeSettings(
        github_api=f"http://127.0.0.1:{closed_port()}", github_repo="o/r", token_env="GH_TOKEN"
    )
    with pytest.raises(DeliveryError, match="could not reach GitHub's API.*github_api"):
        open_pull_request(make_task(project), PROJECT, settings, head_branch="b", environ=ENV)
    with LocalServer(Answer(delay_s=3)) as server:
        started = time.monotonic()
        with pytest.raises(DeliveryError, match="did not answer within 0.5 s.*api_timeout_s"):
            open_pull_request(
                make_task(project), PROJECT, _settings(server, api_timeout_s=0.5), head_branch="b", environ=ENV
            )
        assert time.monotonic() - started < 2.5


def test_missing_settings_are_named(project, tmp_path: Path) -> None:
    task = make_task(project)
    with pytest.raises(DeliveryError, match="set \\[contribute\\] github_repo"):
        open_pull_request(task, PROJECT, ContributeSettings(token_env="GH_TOKEN"), head_branch="b", environ=ENV)
    with pytest.raises(DeliveryError, match="no GitHub token: set \\[contribute\\] token_env"):
        open_pull_request(task, PROJECT, ContributeSettings(github_repo="o/r"), head_branch="b", environ={})
    plain = ContributeSettings(github_api="http://api.example.test", github_repo="o/r", token_env="GH_TOKEN")
    with pytest.raises(DeliveryError, match="over plain http"):
        open_pull_request(task, PROJECT, plain, head_branch="b", environ=ENV)
