"""export_patch and push against real repositories: a bare mirror, a local bare remote, a local HTTP
server that asks git for credentials, and remotes that do not answer."""

from __future__ import annotations

import base64
import os
import tempfile
import time
from pathlib import Path

import pytest

from supervisor.store.instance import ContributeSettings
from supervisor.store.tasks.models import TaskState
from supervisor.work.delivery import DeliveryError, check_deliverable, export_patch, push
from tests.delivery.helpers import Answer, LocalServer, closed_port, git, make_bare, make_project, make_task

TOKEN = "ghp_s3cr3tT0kenNeverLogged"


@pytest.fixture
def project(tmp_path: Path):
    return make_project(tmp_path / "p")


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return make_bare(tmp_path / "remote.git")


def _files_holding(folder: Path, needle: bytes) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file() and needle in path.read_bytes()]


def test_the_patch_is_the_change_from_base_to_result_and_applies(project, tmp_path: Path) -> None:
    data = export_patch(project.mirror, make_task(project))
    assert b"-    return a - b" in data and b"+    return a + b" in data
    assert b"GIT binary patch" in data  # logo.bin travels too
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project.mirror), str(clone))
    git(clone, "checkout", "-q", project.base)
    git(clone, "apply", "--index", "-", input=data)
    git(clone, "commit", "-qm", "applied")
    assert git(clone, "rev-parse", "HEAD^{tree}") == git(project.work, "rev-parse", f"{project.result}^{{tree}}")


def test_a_task_without_a_result_has_no_patch(project) -> None:
    with pytest.raises(DeliveryError, match="task 7 has no result yet"):
        export_patch(project.mirror, make_task(project, outcome=None, result=None, state=TaskState.RUNNING))


def test_a_result_missing_from_the_mirror_is_a_clear_error(project) -> None:
    with pytest.raises(DeliveryError, match="not in the mirror.*project fetch calc"):
        export_patch(project.mirror, make_task(project, result="f" * 40))


def test_push_lands_the_result_under_the_task_branch(project, remote: Path) -> None:
    settings = ContributeSettings(remote=str(remote))
    config_before = (project.mirror / "config").read_bytes()
    report = push(project.mirror, make_task(project), settings)
    assert report.status == "created" and report.branch == "ouroboros/task-7" and not report.forced
    assert git(remote, "rev-parse", "refs/heads/ouroboros/task-7") == project.result
    assert git(remote, "for-each-ref", "--format=%(refname)") == "refs/heads/ouroboros/task-7"  # nothing else
    assert (project.mirror / "config").read_bytes() == config_before
    again = push(project.mirror, make_task(project), settings)
    assert again.status == "up-to-date"


def test_push_honours_prefix_and_remote_override(project, remote: Path, tmp_path: Path) -> None:
    other = make_bare(tmp_path / "other.git")
    settings = ContributeSettings(remote=str(remote), branch_prefix="fixes/ob-")
    report = push(project.mirror, make_task(project, task_id=3), settings, f"file://{other}")
    assert report.branch == "fixes/ob-3" and report.remote == f"file://{other}"
    assert git(other, "rev-parse", "refs/heads/fixes/ob-3") == project.result
    assert git(remote, "for-each-ref") == ""


def test_a_branch_the_remote_holds_elsewhere_is_never_overwritten(project, remote: Path) -> None:
    settings = ContributeSettings(remote=str(remote))
    push(project.mirror, make_task(project), settings)
    with pytest.raises(DeliveryError, match="already holds ouroboros/task-7 at another commit"):
        push(project.mirror, make_task(project, result=project.other), settings)
    assert git(remote, "rev-parse", "refs/heads/ouroboros/task-7") == project.result


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"outcome": "failed"}, "is failed.*only a passed task is delivered.*--force"),
        ({"outcome": "gave-up"}, "is gave-up"),
        ({"outcome": "infrastructure"}, "is infrastructure"),
        ({"needs_review": True}, "needs review \\(touches test_calc.py\\).*--force"),
        ({"outcome": "passed", "state": TaskState.QUEUED}, "is queued \\(verdict: passed\\)"),  # retried since
        ({"outcome": None, "result": None, "state": TaskState.RUNNING}, "has no result yet"),
    ],
)
def test_push_refuses_what_is_not_a_clean_pass(project, remote: Path, kwargs: dict, words: str) -> None:
    with pytest.raises(DeliveryError, match=words):
        push(project.mirror, make_task(project, **kwargs), ContributeSettings(remote=str(remote)))
    assert git(remote, "for-each-ref") == ""


@pytest.mark.parametrize("kwargs", [{"outcome": "failed"}, {"needs_review": True}])
def test_force_pushes_it_and_says_so(project, remote: Path, kwargs: dict) -> None:
    report = push(project.mirror, make_task(project, **kwargs), ContributeSettings(remote=str(remote)), force=True)
    assert report.forced and git(remote, "rev-parse", "refs/heads/ouroboros/task-7") == project.result


def test_check_deliverable_returns_the_result_commit(project) -> None:
    assert check_deliverable(make_task(project)) == project.result


def test_no_remote_and_bad_remotes_are_refused_before_git_runs(project) -> None:
    task = make_task(project)
    with pytest.raises(DeliveryError, match="set \\[contribute\\] remote"):
        push(project.mirror, task, ContributeSettings())
    for bad in ("https://me:pw@github.com/o/r.git", "ssh://host/r.git", "git@github.com:o/r.git", "relative/r.git"):
        with pytest.raises(DeliveryError, match="without a user or password") as caught:
            push(project.mirror, task, ContributeSettings(), bad)
        assert "pw@" not in str(caught.value)


def test_a_bad_branch_prefix_is_refused(project, remote: Path) -> None:
    settings = ContributeSettings(remote=str(remote), branch_prefix="a..b/")
    with pytest.raises(DeliveryError, match="not a valid branch name"):
        push(project.mirror, make_task(project), settings)


def test_an_unreachable_remote_fails_fast_and_clearly(project, tmp_path: Path) -> None:
    task = make_task(project)
    started = time.monotonic()
    with pytest.raises(DeliveryError, match="does not answer"):
        push(project.mirror, task, ContributeSettings(), f"https://127.0.0.1:{closed_port()}/o/r.git")
    with pytest.raises(DeliveryError, match="no repository at that address"):
        push(project.mirror, task, ContributeSettings(), str(tmp_path / "nowhere.git"))
    assert time.monotonic() - started < 20


def test_a_remote_that_never_answers_is_cut_at_the_timeout(project) -> None:
    with LocalServer(Answer(status=200, body=None, delay_s=5)) as server:
        settings = ContributeSettings(push_timeout_s=1)
        started = time.monotonic()
        with pytest.raises(DeliveryError, match="did not finish within 1 s.*push_timeout_s"):
            push(project.mirror, make_task(project), settings, f"{server.url}/o/r.git")
        assert time.monotonic() - started < 4
        port = server.url.rsplit(":", 1)[1]
        assert not [cmd for cmd in _command_lines() if f"127.0.0.1:{port}" in cmd]  # git's helpers killed too


def _command_lines() -> list[str]:
    lines = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return lines


def test_a_missing_mirror_is_named(project, remote: Path, tmp_path: Path) -> None:
    with pytest.raises(DeliveryError, match="no mirror of project 'calc'"):
        push(tmp_path / "gone.git", make_task(project), ContributeSettings(remote=str(remote)))
    with pytest.raises(DeliveryError, match="no mirror of project 'calc'"):
        export_patch(tmp_path / "gone.git", make_task(project))


def test_the_token_reaches_git_through_the_inline_helper_only(project, tmp_path: Path, monkeypatch) -> None:
    """A git host asking for credentials: git answers with the token from the inline credential helper,
    and no trace of it is left in the mirror, in the error or in a temporary folder."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    challenge = Answer(status=401, body={"message": "auth"}, headers={"WWW-Authenticate": 'Basic realm="git"'})
    with LocalServer(challenge) as server:
        settings = ContributeSettings(token_env="DELIVERY_TOKEN", token_user="bot")
        with pytest.raises(DeliveryError) as caught:
            push(
                project.mirror, make_task(project), settings, f"{server.url}/o/r.git", environ={"DELIVERY_TOKEN": TOKEN}
            )
    sent = [r.headers.get("Authorization") for r in server.requests if r.headers.get("Authorization")]
    assert sent and base64.b64decode(sent[0].split()[1]).decode() == f"bot:{TOKEN}"
    assert not any(TOKEN in r.path for r in server.requests)
    assert "refused the credentials" in str(caught.value) and TOKEN not in str(caught.value)
    assert not _files_holding(project.mirror, TOKEN.encode())
    assert os.listdir(tmp_path / "tmp") == []  # nothing was written for it


def test_without_a_token_a_host_asking_for_one_fails_clearly(project) -> None:
    challenge = Answer(status=401, body={"message": "auth"}, headers={"WWW-Authenticate": 'Basic realm="git"'})
    with LocalServer(challenge) as server:
        with pytest.raises(DeliveryError, match="asks for credentials: set \\[contribute\\] token_env"):
            push(project.mirror, make_task(project), ContributeSettings(), f"{server.url}/o/r.git")
    assert not any(r.headers.get("Authorization") for r in server.requests)


def test_the_token_never_goes_over_plain_http_off_this_machine(project) -> None:
    settings = ContributeSettings(token_env="DELIVERY_TOKEN")
    with pytest.raises(DeliveryError, match="refusing to send the token over plain http"):
        push(
            project.mirror, make_task(project), settings, "http://example.test/o/r.git", environ={"DELIVERY_TOKEN": "x"}
        )
