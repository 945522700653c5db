"""Reading SWE-bench-style JSONL: good lines become tasks, every hostile line is named with what to fix."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from supervisor.store.projects import ProjectConfig
from supervisor.store.tasks.models import MAX_BODY, MAX_TITLE, TaskError
from supervisor.store.tasks.swebench import MAX_LINE, default_title, project_resolver, read_instances

BASE = "0123456789abcdef0123456789abcdef01234567"


def instance(**changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "instance_id": "astropy__astropy-12907",
        "repo": "astropy/astropy",
        "base_commit": BASE,
        "problem_statement": "Modeling's separability is wrong\n\nfor nested CompoundModels.",
        "FAIL_TO_PASS": '["astropy/tests/test_sep.py::test_nested"]',
        "PASS_TO_PASS": ["astropy/tests/test_sep.py::test_simple"],
        "test_patch": "diff --git a/t.py b/t.py\n",
        "patch": "THE REFERENCE FIX, never to reach the agent",
        "hints_text": "",
        "version": "4.3",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not ...}


def jsonl(tmp_path: Path, *lines: object) -> Path:
    path = tmp_path / "set.jsonl"
    with open(path, "wb") as handle:
        for line in lines:
            handle.write((line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n")
    return path


def known(repo: str) -> str | None:
    return {"astropy/astropy": "astropy", "django/django": "django"}.get(repo)


def test_a_good_instance_becomes_a_task(tmp_path: Path) -> None:
    batch = read_instances(jsonl(tmp_path, instance(), instance(instance_id="b", priority=7, title="T")), known)
    assert batch.errors == []
    first, second = (item.task for item in batch.tasks)
    assert [item.line for item in batch.tasks] == [1, 2]
    assert first.project == "astropy" and first.external_id == "astropy__astropy-12907"
    assert first.fail_to_pass == ["astropy/tests/test_sep.py::test_nested"]  # a JSON string of a list
    assert first.pass_to_pass == ["astropy/tests/test_sep.py::test_simple"]  # a plain list
    assert first.title == "Modeling's separability is wrong" and first.priority == 0
    assert first.body.startswith("Modeling") and first.test_patch.startswith("diff --git")
    assert first.source == "import set.jsonl"
    assert "REFERENCE FIX" not in first.model_dump_json()  # `patch` is never carried along
    assert (second.priority, second.title) == (7, "T")


def test_blank_lines_are_skipped_and_numbers_kept(tmp_path: Path) -> None:
    path = jsonl(tmp_path, b"", instance(), b"   \t", b"", instance(instance_id="x"))
    batch = read_instances(path, known)
    assert batch.errors == [] and [item.line for item in batch.tasks] == [2, 5]


def test_uppercase_base_commit_and_empty_lists_are_fine(tmp_path: Path) -> None:
    batch = read_instances(jsonl(tmp_path, instance(base_commit=BASE.upper(), PASS_TO_PASS="[]")), known)
    assert batch.tasks[0].task.base_commit == BASE and batch.tasks[0].task.pass_to_pass == []


HOSTILE: list[tuple[object, str]] = [
    (b"{not json", "not JSON"),
    (b'{"instance_id": "x", \xff\xfe}', "not UTF-8 (byte "),
    (b"[1, 2, 3]", "a JSON list, not an object"),
    (b'"just a string"', "a JSON str, not an object"),
    (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
    (instance(repo=..., test_patch=...), "missing repo, test_patch; every instance needs instance_id"),
    (instance(repo="someone/else"), "repo 'someone/else' is no registered project"),
    (instance(base_commit="main"), "base_commit 'main' is not 40 hex digits"),
    (instance(base_commit=BASE[:39] + "g"), "is not 40 hex digits"),
    (instance(base_commit=12), "base_commit must be a string"),
    (instance(instance_id="  "), "instance_id is empty"),
    (instance(FAIL_TO_PASS="test_a, test_b"), "FAIL_TO_PASS is a string but not a JSON list"),
    (instance(FAIL_TO_PASS=[1, 2]), "FAIL_TO_PASS must be a list of test ids"),
    (instance(PASS_TO_PASS='{"a": 1}'), "PASS_TO_PASS must be a list of test ids"),
    (instance(priority=True), "priority must be a whole number"),
    (instance(priority="high"), "priority must be a whole number"),
    (instance(priority=10**9), "priority: Input should be less than or equal to 1000000"),
    (instance(title="two\nlines"), "title: String should match pattern"),
    (instance(title=5), "title must be a string"),
    (instance(problem_statement="x" * (MAX_BODY + 1)), "problem_statement: String should have at most"),
    (instance(instance_id="x\ud800"), "instance_id holds a lone surrogate"),
    (instance(FAIL_TO_PASS=["ok", "\udc80"]), "FAIL_TO_PASS holds a lone surrogate"),
    (instance(problem_statement="fine \udfff"), "problem_statement holds a lone surrogate"),
]


@pytest.mark.parametrize(("line", "message"), HOSTILE)
def test_each_hostile_line_is_named_with_what_to_fix(tmp_path: Path, line: object, message: str) -> None:
    path = jsonl(tmp_path, instance(instance_id="good-1"), line, instance(instance_id="good-3"))
    batch = read_instances(path, known)
    assert [item.line for item in batch.tasks] == [1, 3]
    assert len(batch.errors) == 1 and batch.errors[0].line == 2, batch.errors
    assert message in batch.errors[0].message, batch.errors[0].message
    assert str(batch.errors[0]).startswith("line 2: ")


def test_a_huge_line_is_refused_without_losing_the_lines_after_it(tmp_path: Path) -> None:
    huge = instance(instance_id="huge", problem_statement="x" * (MAX_LINE + 10))
    path = jsonl(tmp_path, instance(instance_id="a"), huge, instance(instance_id="c"), huge)
    batch = read_instances(path, known)
    assert [item.line for item in batch.tasks] == [1, 3]
    assert [(e.line, e.message.startswith(f"longer than {MAX_LINE} bytes")) for e in batch.errors] == [
        (2, True),
        (4, True),
    ]


def test_a_line_of_exactly_the_limit_is_read(tmp_path: Path) -> None:
    line = json.dumps(instance(problem_statement="")).encode()
    padded = line[:-1] + b" " * (MAX_LINE - len(line)) + b"}"
    assert len(padded) == MAX_LINE
    batch = read_instances(jsonl(tmp_path, padded), known)
    assert batch.errors == [] and batch.tasks[0].task.title == "astropy__astropy-12907"


def test_a_repeated_instance_names_the_first_line(tmp_path: Path) -> None:
    batch = read_instances(jsonl(tmp_path, instance(), instance(instance_id="other"), instance()), known)
    assert [item.line for item in batch.tasks] == [1, 2]
    assert [str(e) for e in batch.errors] == [
        "line 3: instance 'astropy__astropy-12907' repeats line 1; keep one of them"
    ]


def test_the_file_itself_must_be_a_readable_regular_file(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="cannot read .*nowhere.jsonl"):
        read_instances(tmp_path / "nowhere.jsonl", known)
    with pytest.raises(TaskError, match="not a regular file"):
        read_instances(tmp_path, known)
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            read_instances(fifo, known)
        except TaskError as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5)
    assert not reader.is_alive(), "reading a FIFO blocked"
    assert outcome and "not a regular file" in str(outcome[0])


def test_the_default_title_is_the_first_line_cut_to_the_limit() -> None:
    assert default_title("\n\n  first real line  \nsecond", "id") == "first real line"
    assert default_title("y" * 500, "id") == "y" * MAX_TITLE
    assert default_title("", "inst-1") == "inst-1"
    assert default_title("a\u2028b", "id") == "a"  # a Unicode line separator ends the line too


def _project(name: str, source: str) -> ProjectConfig:
    return ProjectConfig(name=name, source=source)


def test_the_project_resolver_rule() -> None:
    resolve = project_resolver(
        [
            _project("astropy__astropy", "/srv/mirrors/whatever"),
            _project("dj", "https://github.com/django/django.git"),
            _project("req", "git@github.com:psf/requests.git/"),
            _project("flask", "/home/me/src/pallets/flask"),
            _project("notscikit", "https://example.com/xscikit-learn/scikit-learn"),
        ]
    )
    assert resolve("astropy/astropy") == "astropy__astropy"  # owner__name
    assert resolve("django/django") == "dj"  # URL ending in /repo.git
    assert resolve("Django/Django") == "dj"  # case-insensitive, as the hosts are
    assert resolve("psf/requests") == "req"  # scp-like ending in :repo.git (trailing / ignored)
    assert resolve("pallets/flask") == "flask"  # a local path ending in /repo
    assert resolve("flask") == "flask"  # the project's own name
    assert resolve("scikit-learn/scikit-learn") is None  # only at a / or : boundary
    assert resolve("") is None and resolve("nobody/here") is None


def test_a_repo_two_projects_match_is_an_error_on_its_line(tmp_path: Path) -> None:
    resolve = project_resolver(
        [_project("a", "https://github.com/astropy/astropy"), _project("b", "/mirror/astropy/astropy.git")]
    )
    with pytest.raises(TaskError, match="matches projects a, b"):
        resolve("astropy/astropy")
    batch = read_instances(jsonl(tmp_path, instance()), resolve)
    assert batch.tasks == [] and "matches projects a, b" in batch.errors[0].message
