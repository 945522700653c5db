"""`supervisor project …` through click: --json documents, clear errors, exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.store.instance import Instance
from supervisor.store.instance_init import init_instance
from supervisor.store.projects import ProjectRegistry
from tests.gate.repo_factory import git
from tests.operator.conftest import cli, cli_json
from tests.projects.sources import make_source


@pytest.fixture
def instance(tmp_path: Path) -> Instance:
    return init_instance(tmp_path / "home")


def test_add_list_show_fetch_remove_as_json(tmp_path: Path, instance: Instance) -> None:
    source = make_source(tmp_path / "src", branch="trunk")  # no --branch: the source's HEAD branch
    home = str(instance.home)
    added = cli_json(
        "project",
        "add",
        "demo",
        str(source),
        "--home",
        home,
        "--test-command",
        "python -m pytest -q tests",
        "--task-tokens",
        "50000",
        "--image",
        "my-image:1",
    )
    head = git(source, "rev-parse", "HEAD")
    assert set(added) == {"project", "fetch"}
    assert added["fetch"]["head"] == head and added["fetch"]["refs"] == 2
    config = added["project"]["config"]
    assert config["default_branch"] == "trunk" and config["test_command"] == ["python", "-m", "pytest", "-q", "tests"]
    assert config["task_tokens"] == 50_000 and config["image"] == "my-image:1"
    assert added["project"]["mirror"] == str(instance.projects / "demo" / "mirror.git")
    listed = cli_json("project", "list", "--home", home)
    assert [p["config"]["name"] for p in listed] == ["demo"] and listed[0]["head"] == head
    shown = cli_json("project", "show", "demo", "--home", home)
    assert shown == listed[0]
    (source / "new.py").write_text("x = 1\n")
    git(source, "add", "new.py")
    git(source, "commit", "-q", "-m", "more")
    fetched = cli_json("project", "fetch", "demo", "--home", home)
    assert fetched["head"] == git(source, "rev-parse", "HEAD") != head
    removed = cli_json("project", "remove", "demo", "--yes", "--home", home)
    assert removed == {"removed": "demo", "folder": str(instance.projects / "demo")}
    assert cli_json("project", "list", "--home", home) == []
    assert ProjectRegistry(instance.projects).names() == []


def test_text_output_for_a_person(tmp_path: Path, instance: Instance) -> None:
    source = make_source(tmp_path / "src")
    home = str(instance.home)
    _, out = cli("project", "add", "demo", str(source), "--home", home)
    assert "fetched" in out and "default branch main at" in out and "(the agent image)" in out
    assert "demo" in cli("project", "list", "--home", home)[1]
    assert "python -m pytest -q" in cli("project", "show", "demo", "--home", home)[1]
    assert "no projects yet" not in cli("project", "list", "--home", home)[1]
    _, out = cli("project", "remove", "demo", "--home", home, code=1)  # asks; no answer is no
    assert "Aborted" in out and ProjectRegistry(instance.projects).exists("demo")
    assert "removed project demo" in cli("project", "remove", "demo", "--yes", "--force", "--home", home)[1]
    assert "no projects yet" in cli("project", "list", "--home", home)[1]


def test_errors_say_what_to_fix_with_their_exit_codes(tmp_path: Path, instance: Instance) -> None:
    source = make_source(tmp_path / "src")
    home = str(instance.home)
    missing = cli_json("project", "add", "demo", str(source), "--branch", "nope", "--home", home, code=1)
    assert "has no branch 'nope' (its branches: main); pass --branch" in missing["error"]["message"]
    bad_name = cli_json("project", "add", "Bad/Name", str(source), "--home", home, code=1)
    assert "is not a project name" in bad_name["error"]["message"]
    assert bad_name["error"]["kind"] == "ProjectError"
    unreachable = cli_json(
        "project", "add", "web", "http://127.0.0.1:9/x.git", "--branch", "main", "--home", home, code=1
    )
    assert "http://127.0.0.1:9/x.git" in unreachable["error"]["message"]
    quotes = cli_json("project", "add", "demo", str(source), "--test-command", "pytest 'open", "--home", home, code=2)
    assert quotes["error"]["kind"] == "usage" and "--test-command" in quotes["error"]["message"]
    unknown = cli_json("project", "show", "ghost", "--home", home, code=1)
    assert "no project named 'ghost'" in unknown["error"]["message"]
    assert cli_json("project", "fetch", "ghost", "--home", home, code=1)["error"]["kind"] == "ProjectError"
    assert (
        "no project named"
        in cli_json("project", "remove", "ghost", "--yes", "--home", home, code=1)["error"]["message"]
    )
    cli_json("project", "add", "demo", str(source), "--home", home)
    taken = cli_json("project", "add", "demo", str(source), "--home", home, code=1)
    assert "already exists" in taken["error"]["message"]
    unconfirmed = cli_json("project", "remove", "demo", "--home", home, code=2)
    assert "pass --yes" in unconfirmed["error"]["message"]
    no_home = cli_json("project", "list", "--home", str(tmp_path / "nowhere"), code=1)
    assert "not an Ouroboros instance" in no_home["error"]["message"]
    assert not any(p.name.startswith(".adding") for p in instance.projects.iterdir())


def test_a_password_in_the_url_is_never_printed(tmp_path: Path, instance: Instance) -> None:
    out = cli_json(
        "project",
        "add",
        "web",
        "http://user:s3cret@127.0.0.1:9/x.git",
        "--branch",
        "main",
        "--home",
        str(instance.home),
        code=1,
    )
    assert "s3cret" not in out["error"]["message"] and "***@127.0.0.1:9" in out["error"]["message"]


def test_a_project_with_unfinished_tasks_is_removed_only_with_force_which_cancels_them(
    tmp_path: Path, instance: Instance
) -> None:
    source = make_source(tmp_path / "src", branch="main")
    home = str(instance.home)
    cli_json("project", "add", "demo", str(source), "--home", home)
    queued = cli_json("task", "add", "--project", "demo", "--title", "Fix it", "--home", home)
    done = cli_json("task", "add", "--project", "demo", "--title", "Old one", "--home", home)
    cli_json("task", "cancel", str(done["id"]), "--home", home)
    error = cli_json("project", "remove", "demo", "--yes", "--home", home, code=1)
    assert f"1 unfinished task(s) ({queued['id']})" in error["error"]["message"]
    assert "--force" in error["error"]["message"]
    assert ProjectRegistry(instance.projects).names() == ["demo"]  # nothing changed
    assert cli_json("task", "show", str(queued["id"]), "--home", home)["task"]["state"] == "queued"
    cli_json("project", "remove", "demo", "--yes", "--force", "--home", home)
    assert ProjectRegistry(instance.projects).names() == []
    shown = cli_json("task", "show", str(queued["id"]), "--home", home)["task"]
    assert shown["state"] == "cancelled" and "removed" in shown["note"]
