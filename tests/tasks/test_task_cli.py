"""`supervisor task ...` on a real instance and a real project mirror: every error exit and message,
and the --json documents."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from supervisor.cli import main
from supervisor.store.instance import Instance
from supervisor.store.instance_init import init_instance
from supervisor.store.projects import ProjectConfig, ProjectRegistry
from supervisor.store.tasks import models
from supervisor.store.tasks.sqlite_queue import open_queue

GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "HOME": "/nonexistent",
    "PATH": "/usr/bin:/bin",
}
SECRET = "HIDDEN-TEST-MARKER-7f3a"
PATCH = (
    "diff --git a/tests/test_calc.py b/tests/test_calc.py\n"
    "--- a/tests/test_calc.py\n+++ b/tests/test_calc.py\n"
    "@@ -1,2 +1,5 @@\n from calc import add\n def test_add(): assert add(1, 2) == 3\n"
    f"+\n+def test_hidden():  # {SECRET}\n+    assert add(2, 2) == 4\n"
)


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd,
        env=GIT_ENV,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


class Setup:
    def __init__(self, instance: Instance, source: Path) -> None:
        self.instance = instance
        self.home = str(instance.home)
        self.source = source
        self.mirror = instance.projects / "demo" / "mirror.git"
        self.v1 = git(source, "rev-parse", "v1")
        self.main = git(source, "rev-parse", "main")

    def cli(self, *args: str, code: int = 0) -> str:
        result = CliRunner().invoke(main, [*args, "--home", self.home])
        assert result.exit_code == code, (result.exit_code, result.output, result.exception)
        assert "Traceback" not in result.output
        return result.output

    def json(self, *args: str, code: int = 0) -> object:
        return json.loads(self.cli(*args, "--json", code=code))

    def error(self, *args: str, code: int = 1) -> str:
        body = self.json(*args, code=code)
        assert isinstance(body, dict) and set(body) == {"error"} and body["error"]["exit_code"] == code
        text = self.cli(*args, code=code)
        assert text.startswith("Error: ") or text.startswith("Usage: ")
        return str(body["error"]["message"])

    def queued(self) -> list[dict[str, object]]:
        return self.json("task", "list")  # type: ignore[return-value]


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    instance = init_instance(tmp_path / "home")
    source = tmp_path / "demo-src"
    source.mkdir()
    git(source, "init", "-q", "-b", "main")
    (source / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (source / "tests").mkdir()
    (source / "tests" / "test_calc.py").write_text("from calc import add\ndef test_add(): assert add(1, 2) == 3\n")
    git(source, "add", "-A")
    git(source, "commit", "-qm", "first")
    git(source, "tag", "v1")
    (source / "README").write_text("demo\n")
    git(source, "add", "-A")
    git(source, "commit", "-qm", "second")
    registry = ProjectRegistry(instance.projects)
    registry.save(ProjectConfig(name="demo", source=str(source)))
    git(tmp_path, "clone", "-q", "--bare", str(source), str(registry.mirror("demo")))
    return Setup(instance, source)


def test_add_starts_from_the_default_branch_and_prints_no_test_patch(setup: Setup, tmp_path: Path) -> None:
    patch = tmp_path / "hidden.patch"
    patch.write_text(PATCH)
    body = tmp_path / "body.md"
    body.write_text("add() subtracts.\nFix it.\n")
    task = setup.json(
        "task", "add", "--project", "demo", "--title", "Fix add", "--body-file", str(body),
        "--fail-to-pass", "tests/test_calc.py::test_add", "--fail-to-pass", "tests/test_calc.py::test_hidden",
        "--test-patch", str(patch), "--priority", "5",
    )  # fmt: skip
    assert isinstance(task, dict)
    assert task["base_commit"] == setup.main and task["state"] == "queued" and task["priority"] == 5
    assert task["fail_to_pass"] == ["tests/test_calc.py::test_add", "tests/test_calc.py::test_hidden"]
    assert task["pass_to_pass"] is None and task["body"] == "add() subtracts.\nFix it.\n"
    assert "test_patch" not in task and task["test_patch_bytes"] == len(PATCH.encode())
    text = setup.cli("task", "show", str(task["id"]))
    assert f"test patch   {len(PATCH.encode())} bytes" in text and "PASS_TO_PASS: every test" in text
    shown = setup.cli("task", "show", str(task["id"]), "--json")
    assert SECRET not in text and SECRET not in shown and SECRET not in setup.cli("task", "list", "--json")
    assert setup.queued()[0]["id"] == task["id"]


def test_add_takes_a_base_tag_or_commit_and_text_output(setup: Setup) -> None:
    by_tag = setup.json("task", "add", "--project", "demo", "--title", "A", "--base", "v1")
    by_sha = setup.json(
        "task", "add", "--project", "demo", "--title", "B", "--base", setup.v1[:10], "--pass-to-pass", "t::x"
    )
    assert by_tag["base_commit"] == by_sha["base_commit"] == setup.v1  # type: ignore[index]
    assert by_sha["pass_to_pass"] == ["t::x"]  # type: ignore[index]
    text = setup.cli("task", "add", "--project", "demo", "--title", "C")
    assert text.startswith("queued task 3\n") and f"base {setup.main}" in text


def test_add_errors_say_what_to_fix_and_queue_nothing(setup: Setup, tmp_path: Path) -> None:
    add = ("task", "add", "--project", "demo", "--title", "T")
    assert "no project named 'nope' (known: demo)" in setup.error("task", "add", "--project", "nope", "--title", "T")
    assert "is not a project name" in setup.error("task", "add", "--project", "Bad Name", "--title", "T")
    ProjectRegistry(setup.instance.projects).save(ProjectConfig(name="bare", source="/x"))
    assert "project 'bare' has no mirror yet" in setup.error("task", "add", "--project", "bare", "--title", "T")
    assert "'nosuch' names no commit in the mirror of 'demo'" in setup.error(*add, "--base", "nosuch")
    assert "names no commit" in setup.error(*add, "--base", "--upload-pack=touch /tmp/x")
    assert "title" in setup.error("task", "add", "--project", "demo", "--title", "two\nlines")
    binary = tmp_path / "binary"
    binary.write_bytes(b"ok \xff\xfe")
    assert "is not UTF-8 text (byte 3); save it as UTF-8" in setup.error(*add, "--body-file", str(binary))
    assert "cannot read the body file" in setup.error(*add, "--body-file", str(tmp_path / "missing"))
    big = tmp_path / "big.patch"
    big.write_text("+" * 2_000_001)
    assert "test patch" in setup.error(*add, "--test-patch", str(big)) and "too big" in setup.error(
        *add, "--test-patch", str(big)
    )
    huge = tmp_path / "huge.patch"
    with open(huge, "wb") as handle:
        handle.truncate(50_000_000)  # sparse: refused by its size, never read
    assert "too big" in setup.error(*add, "--test-patch", str(huge))
    assert "test patch" in setup.error(*add, "--test-patch", str(binary)) and "UTF-8" in setup.error(
        *add, "--test-patch", str(binary)
    )
    wrong = tmp_path / "wrong.patch"
    wrong.write_text(PATCH.replace("from calc import add\n", "from calc import sub\n"))
    message = setup.error(*add, "--test-patch", str(wrong))
    assert f"the test patch does not apply to {setup.main[:12]}" in message and "patch does not apply" in message
    garbage = tmp_path / "garbage.patch"
    garbage.write_text("this is no patch\n")
    assert "does not apply" in setup.error(*add, "--test-patch", str(garbage))
    assert setup.error(*add, "--priority", "high", code=2)
    assert setup.queued() == []


def test_a_fifo_for_a_file_is_refused_not_waited_on(setup: Setup, tmp_path: Path) -> None:
    fifo = tmp_path / "body.fifo"
    os.mkfifo(fifo)
    outcome: list[str] = []
    worker = threading.Thread(
        target=lambda: outcome.append(
            setup.error("task", "add", "--project", "demo", "--title", "T", "--body-file", str(fifo))
        ),
        daemon=True,
    )
    worker.start()
    worker.join(20)
    assert not worker.is_alive(), "the command waited on a FIFO"
    assert "is not a regular file" in outcome[0]


def _instance_line(setup: Setup, instance_id: str, **changes: object) -> str:
    data: dict[str, object] = {
        "instance_id": instance_id,
        "repo": "someone/demo",
        "base_commit": setup.main,
        "problem_statement": f"Problem {instance_id}\nmore",
        "FAIL_TO_PASS": '["tests/test_calc.py::test_hidden"]',
        "PASS_TO_PASS": "[]",
        "test_patch": PATCH,
    }
    data.update(changes)
    return json.dumps(data)


def _write(tmp_path: Path, *lines: str) -> str:
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_import_queues_every_line_or_none(setup: Setup, tmp_path: Path) -> None:
    ProjectRegistry(setup.instance.projects).save(
        ProjectConfig(name="demo", source="https://example.com/someone/demo.git")
    )  # the rule: a source ending in /repo.git
    good = _write(tmp_path, _instance_line(setup, "demo-1"), "", _instance_line(setup, "demo-2", priority=3))
    done = setup.json("task", "import", good)
    assert isinstance(done, dict) and len(done["queued"]) == 2 and done["skipped"] == []
    tasks = setup.queued()
    assert [(t["external_id"], t["title"], t["project"]) for t in tasks] == [
        ("demo-1", "Problem demo-1", "demo"),
        ("demo-2", "Problem demo-2", "demo"),
    ]
    again = setup.error("task", "import", good)
    assert "line 1: instance 'demo-1' is already task" in again and "line 3: instance 'demo-2'" in again
    bad = _write(
        tmp_path,
        _instance_line(setup, "demo-3"),
        _instance_line(setup, "demo-4", repo="nobody/else"),
        _instance_line(setup, "demo-5", base_commit="f" * 40),
        _instance_line(setup, "demo-6", test_patch=PATCH.replace("add(1, 2)", "add(9, 9)")),
        "{broken",
    )
    message = setup.error("task", "import", bad)
    assert "4 bad line(s), nothing was queued" in message and "--skip-bad" in message
    assert "line 2: repo 'nobody/else' is no registered project" in message
    assert f"line 3: base_commit {'f' * 40} is not in the mirror of 'demo'" in message
    assert f"line 4: test_patch does not apply to {setup.main[:12]}" in message
    assert "line 5: not JSON" in message
    assert len(setup.queued()) == 2
    skipped = setup.json("task", "import", bad, "--skip-bad")
    assert isinstance(skipped, dict) and len(skipped["queued"]) == 1
    assert [s["line"] for s in skipped["skipped"]] == [2, 3, 4, 5]
    assert [t["external_id"] for t in setup.queued()] == ["demo-1", "demo-2", "demo-3"]
    text = setup.cli("task", "import", _write(tmp_path, _instance_line(setup, "demo-7"), "[]"), "--skip-bad")
    assert "queued 1 task(s)" in text and "line 2: a JSON list, not an object" in text


def test_import_of_a_file_that_is_not_there(setup: Setup, tmp_path: Path) -> None:
    assert "cannot read" in setup.error("task", "import", str(tmp_path / "none.jsonl"))
    assert "is a directory" in setup.error("task", "import", str(tmp_path), code=2)


def test_list_filters_and_its_usage_errors(setup: Setup) -> None:
    for title in ("one", "two", "three"):
        setup.cli("task", "add", "--project", "demo", "--title", title)
    setup.cli("task", "cancel", "2")
    assert [t["title"] for t in setup.json("task", "list", "--state", "queued")] == ["one", "three"]  # type: ignore[union-attr,index]
    assert [t["id"] for t in setup.json("task", "list", "--state", "cancelled", "--state", "passed")] == [2]  # type: ignore[union-attr,index]
    assert [t["id"] for t in setup.json("task", "list", "--limit", "1")] == [1]  # type: ignore[union-attr,index]
    assert setup.json("task", "list", "--project", "other") == []
    text = setup.cli("task", "list")
    assert text.splitlines()[0].split() == ["ID", "STATE", "PRI", "PROJECT", "TRY", "TITLE"]
    assert "cancelled" in text.splitlines()[2]
    assert setup.error("task", "list", "--state", "bogus", code=2)
    assert setup.error("task", "list", "--limit", "-1", code=2)


def test_cancel_and_retry_from_the_command_line(setup: Setup) -> None:
    setup.cli("task", "add", "--project", "demo", "--title", "T")
    cancelled = setup.json("task", "cancel", "1", "--reason", "not now")
    assert cancelled["state"] == "cancelled" and cancelled["note"] == "not now"  # type: ignore[index]
    assert "task 1 is cancelled already" in setup.error("task", "cancel", "1")
    assert setup.cli("task", "retry", "1") == "queued task 1 again: T\n"
    assert "only a finished or cancelled task can be retried" in setup.error("task", "retry", "1")
    for command in ("show", "cancel", "retry"):
        assert "no task 42; `supervisor task list`" in setup.error("task", command, "42")
    assert setup.error("task", "show", "one", code=2)


def test_show_prints_the_verdict_and_the_diff_terminal_safe(setup: Setup, tmp_path: Path) -> None:
    setup.cli("task", "add", "--project", "demo", "--title", "Fix add")
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(setup.source), str(work))
    (work / "calc.py").write_text("def add(a, b):\n    return a + b  # \x1b[2J\x1b]52;c;cHduZWQ=\x07\n")
    git(work, "commit", "-qam", "fix")
    result = git(work, "rev-parse", "HEAD")
    git(setup.mirror, "fetch", "-q", str(work), "HEAD:refs/heads/ouroboros/task/1")
    queue = open_queue(setup.instance.tasks_db)
    claim = queue.claim("supervisor", 60)
    assert claim is not None
    assert queue.mark_judging(claim, result, "ouroboros/task/1", "Fixed add.\n\x1b[31mred\u202e")
    tests = models.TestOutcomes(fail_to_pass_passed=["t::ok"], regressions=["t::\x1b[8mhidden"], pass_to_pass_checked=3)
    verdict = models.TaskVerdict(
        outcome="failed", reason="a regression", base_commit=setup.main, result_commit=result, tests=tests
    )
    assert queue.finish(claim, verdict)
    queue.close()
    text = setup.cli("task", "show", "1")
    assert "\x1b" not in text and "\u202e" not in text and "\x07" not in text
    assert "\\x1b[2J" in text and "\\u202e" in text and "t::\\x1b[8mhidden" in text
    assert "verdict      failed: a regression" in text and "regressions (1):" in text
    assert "-    return a - b" in text and f"diff {setup.main[:12]}..{result}" in text
    assert "1  fence 1  supervisor" in text and "as failed: a regression" in text
    shown = setup.json("task", "show", "1")
    assert isinstance(shown, dict) and set(shown) == {"task", "attempts", "diff", "diff_note"}
    assert "\x1b[2J" in shown["diff"] and shown["diff_note"] is None
    assert shown["task"]["verdict"]["tests"]["regressions"] == ["t::\x1b[8mhidden"]
    assert shown["attempts"][0]["ended_as"] == "failed"


def test_show_says_when_the_result_is_not_in_the_mirror(setup: Setup) -> None:
    setup.cli("task", "add", "--project", "demo", "--title", "T")
    queue = open_queue(setup.instance.tasks_db)
    claim = queue.claim("supervisor", 60)
    assert claim is not None and queue.mark_judging(claim, "e" * 40, "gone", "s")
    queue.close()
    shown = setup.json("task", "show", "1")
    assert (
        isinstance(shown, dict) and shown["diff"] is None and "no diff of the result eeeeeeeeeeee" in shown["diff_note"]
    )
    assert "diff         unavailable: no diff of the result" in setup.cli("task", "show", "1")


def test_no_instance_or_a_newer_queue_is_a_clear_error(setup: Setup, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["task", "list", "--home", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and "not an Ouroboros instance" in result.output
    setup.cli("task", "list")
    db = sqlite3.connect(setup.instance.tasks_db)
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    assert "written by a newer release" in setup.error("task", "list")
