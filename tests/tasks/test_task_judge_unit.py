"""The task verdict's rules, fast: outcome lists, test ids, the test-path rule, the base cache, and the
judge's decisions over real git with a scripted engine (real containers: test_task_judge_docker.py)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from sandbox.errors import EngineUnavailableError
from sandbox.fake import FakeEngine, gate_output
from sandbox.spec import ContainerSpec, RunResult
from supervisor.base.git_ops import Git, TreeEntry
from supervisor.gate.passes import graft
from supervisor.work.task_judge import TaskJudge
from supervisor.work.task_review import review_reasons
from supervisor.work.task_snapshot import commit_work_area
from supervisor.work.task_tests import (
    cache_file,
    compute_outcomes,
    is_pass,
    is_task_test_path,
    is_test_support,
    junit_id,
    load_base_outcomes,
    save_base_outcomes,
)
from tests.tasks.task_factory import (
    FIXED_OPS,
    HIDDEN_TEST,
    hidden_patch,
    make_mirror,
    make_task,
    project,
    project_files,
    work_area,
)

BASE = {"t::a": "passed", "t::b": "passed", "t::f2p": "failed", "t::flaky": "failed", "t::s": "skipped"}


# -- the verdict from outcome dicts ---------------------------------------------------------------


def test_fix_passes_with_its_fail_to_pass_list() -> None:
    after = {**BASE, "t::f2p": "passed"}
    outcomes = compute_outcomes(BASE, after, ["t::f2p"], None)
    assert outcomes.fail_to_pass_passed == ["t::f2p"] and outcomes.fail_to_pass_failed == []
    assert outcomes.regressions == [] and outcomes.pass_to_pass_checked == 2 and is_pass(outcomes)


def test_a_test_that_passed_on_base_and_fails_skips_or_vanishes_is_a_regression() -> None:
    after = {"t::a": "failed", "t::f2p": "passed", "t::flaky": "passed"}  # b vanished
    outcomes = compute_outcomes(
        {**BASE, "t::c": "passed", "t::d": "passed"}, {**after, "t::c": "skipped"}, ["t::f2p"], None
    )
    assert outcomes.regressions == ["t::a", "t::b", "t::c", "t::d"] and not is_pass(outcomes)


def test_fail_to_pass_still_failing_or_missing_fails() -> None:
    assert compute_outcomes(BASE, BASE, ["t::f2p"], None).fail_to_pass_failed == ["t::f2p"]
    outcomes = compute_outcomes(BASE, BASE, ["t::nowhere"], None)
    assert outcomes.fail_to_pass_failed == ["t::nowhere"] and not is_pass(outcomes)


def test_a_fail_to_pass_test_already_passing_on_base_is_fine_if_it_still_passes() -> None:
    assert is_pass(compute_outcomes(BASE, BASE, ["t::a"], None))
    assert compute_outcomes(BASE, {**BASE, "t::a": "failed"}, ["t::a"], None).fail_to_pass_failed == ["t::a"]


def test_listed_pass_to_pass_counts_only_what_is_listed_and_passed_on_base() -> None:
    after = {**BASE, "t::b": "failed", "t::f2p": "passed"}
    outcomes = compute_outcomes(BASE, after, ["t::f2p"], ["t::a", "t::flaky", "t::ghost"])
    assert outcomes.regressions == [] and outcomes.pass_to_pass_checked == 1  # b not listed
    assert compute_outcomes(BASE, after, ["t::f2p"], ["t::b"]).regressions == ["t::b"]


def test_node_ids_are_matched_to_junit_ids_and_reported_as_given() -> None:
    assert junit_id("tests/test_x.py::test_y") == "tests.test_x::test_y"
    assert junit_id("tests/test_x.py::TestA::TestB::test_y[a/b::c-1]") == "tests.test_x.TestA.TestB::test_y[a/b::c-1]"
    assert junit_id("tests.test_x::test_y") == "tests.test_x::test_y"
    assert junit_id("weird") == "weird"
    base = {"tests.test_x::test_y": "failed", "tests.test_x::test_z": "passed"}
    after = {"tests.test_x::test_y": "passed", "tests.test_x::test_z": "passed"}
    outcomes = compute_outcomes(base, after, ["tests/test_x.py::test_y"], ["tests/test_x.py::test_z"])
    assert outcomes.fail_to_pass_passed == ["tests/test_x.py::test_y"] and outcomes.pass_to_pass_checked == 1


@pytest.mark.parametrize(
    "path",
    [
        "tests/test_a.py",
        "tests/data/fixture.json",
        "src/pkg/tests/helpers.py",
        "pkg/tests",  # a test folder replaced by a file or link
        "pkg/test_mod.py",
        "pkg/mod_test.py",
        "deep/conftest.py",
        "pytest.ini",
        "sub/tox.ini",
        "setup.cfg",
        ".pytest.toml",
        "pkg/sitecustomize.py",
        "evil.pth",
        "x/y.dist-info/entry_points.txt",
    ],
)
def test_test_paths_and_machinery_come_from_the_tests_commit(path: str) -> None:
    assert is_task_test_path(path)


@pytest.mark.parametrize("path", ["pkg/mod.py", "pyproject.toml", "setup.py", "README.md", "django/test/client.py"])
def test_code_and_mixed_config_come_from_the_result(path: str) -> None:
    assert not is_task_test_path(path)
    assert is_task_test_path(path, frozenset({path}))  # unless the hidden test patch touches it


@pytest.mark.parametrize(
    "path",
    [
        "numpy/testing/utils.py",
        "pandas/_testing/asserters.py",
        "sklearn/utils/_testing.py",
        "django/test/client.py",
        "pkg/test_utils.py",
        "lib/testutils/x.py",
        "Pkg/Testing.py",
    ],
)
def test_test_support_code_is_named(path: str) -> None:
    assert is_test_support(path)


@pytest.mark.parametrize("path", ["pkg/mod.py", "src/_pytest/main.py", "latest.py", "contest/x.py", "attest.py"])
def test_other_code_is_not_test_support(path: str) -> None:
    assert not is_test_support(path)


# -- the base cache, read with care -------------------------------------------------------------


def test_base_cache_round_trip_and_hostile_files(tmp_path: Path) -> None:
    base = "a" * 40
    assert load_base_outcomes(tmp_path, base, "patch", "s") is None
    save_base_outcomes(tmp_path, base, "patch", "s", {"t::a": "passed"})
    assert load_base_outcomes(tmp_path, base, "patch", "s") == {"t::a": "passed"}
    assert load_base_outcomes(tmp_path, base, "other patch", "s") is None
    assert load_base_outcomes(tmp_path, "b" * 40, "patch", "s") is None
    assert load_base_outcomes(tmp_path, base, "patch", "another command or image") is None
    path = cache_file(tmp_path, base, "patch")
    for junk in (b"", b"\xff\xfe not json", b'{"version": 1}', b"[" * 100_000, b'{"tests": {"t": "forged"}}'):
        path.write_bytes(junk)
        assert load_base_outcomes(tmp_path, base, "patch", "s") is None
    path.unlink()
    os.mkfifo(path)  # never blocks
    assert load_base_outcomes(tmp_path, base, "patch", "s") is None
    path.unlink()
    path.symlink_to("/etc/passwd")
    assert load_base_outcomes(tmp_path, base, "patch", "s") is None
    path.unlink()
    other = tmp_path / "other"
    other.mkdir()
    save_base_outcomes(other, "b" * 40, "patch", "s", {"t::a": "passed"})
    os.rename(cache_file(other, "b" * 40, "patch"), path)  # a file written for another base
    assert load_base_outcomes(tmp_path, base, "patch", "s") is None


# -- the judge over real git, with a scripted engine ----------------------------------------------


def fake_pytest(spec: ContainerSpec) -> RunResult:
    """Reads the exported tree like the tests would: test_mul passes only on a fixed `mul`."""
    src = Path(next(m.source for m in spec.mounts if m.target == "/src"))
    ops = (src / "calc" / "ops.py").read_text()
    cases = ['<testcase classname="tests.test_ops" name="test_add"/>']
    if (src / "tests" / "test_mul.py").exists():
        failure = "" if "a * b" in ops else '<failure message="assert 7 == 12"/>'
        cases.append(f'<testcase classname="tests.test_mul" name="test_mul">{failure}</testcase>')
    report = f"<testsuites><testsuite>{''.join(cases)}</testsuite></testsuites>"
    return RunResult(
        exit_code=0,
        timed_out=False,
        output=gate_output(spec, report),
        output_bytes=0,
        truncated=False,
        duration_s=0.5,
        container_id=uuid.uuid4().hex,
    )


def _judge(tmp_path: Path, engine: FakeEngine) -> TaskJudge:
    return TaskJudge(
        engine, scratch=tmp_path / "scratch", instance="t", cache=tmp_path / "cache", agent_image=lambda: "img"
    )


def _result(tmp_path: Path, files: dict[str, str], name: str = "area") -> tuple[Path, str, str, str]:
    mirror, base = make_mirror(tmp_path)
    patch = hidden_patch(tmp_path)
    area = work_area(mirror, base, tmp_path / name, files)
    made = commit_work_area(
        mirror, area, base_commit=base, branch="ouroboros/task-12-a1", message="m", max_files=100, max_mb=5
    )
    return mirror, base, patch, made.commit


def test_judge_passes_a_fix_and_caches_the_base(tmp_path: Path) -> None:
    mirror, base, patch, result = _result(tmp_path, {"calc/ops.py": FIXED_OPS})
    engine = FakeEngine(gate=fake_pytest)
    judge = _judge(tmp_path, engine)
    verdict = judge.judge(mirror, project(), make_task(base, patch), result)
    assert verdict.outcome == "passed" and not verdict.needs_review, verdict
    assert (
        verdict.tests.fail_to_pass_passed == ["tests/test_mul.py::test_mul"] and verdict.tests.pass_to_pass_checked == 1
    )
    assert len(engine.calls) == 2 and verdict.test_time_s == 1.0
    spec = engine.calls[0]
    assert spec.role == "gate" and spec.network is None and spec.instance == "t" and spec.image == "img"
    assert (
        spec.env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] == "1"
        and "-I" in spec.command
        and "--continue-on-collection-errors" in spec.command
    )
    again = judge.judge(mirror, project(), make_task(base, patch), result)
    assert again.outcome == "passed" and len(engine.calls) == 3 and again.test_time_s == 0.5  # base from the cache
    assert verdict.duration_s > 0


def test_judge_never_shows_the_agent_the_hidden_test_and_never_takes_its_tests(tmp_path: Path) -> None:
    forged = "def test_mul():\n    assert True\n"
    mirror, base, patch, result = _result(tmp_path, {"tests/test_mul.py": forged, "calc/test_extra.py": "x = 1\n"})
    seen: list[str] = []

    def spy(spec: ContainerSpec) -> RunResult:
        src = Path(next(m.source for m in spec.mounts if m.target == "/src"))
        seen.append((src / "tests" / "test_mul.py").read_text())
        assert not (src / "calc" / "test_extra.py").exists()
        return fake_pytest(spec)

    verdict = _judge(tmp_path, FakeEngine(gate=spy)).judge(mirror, project(), make_task(base, patch), result)
    assert seen == [HIDDEN_TEST, HIDDEN_TEST]
    assert verdict.outcome == "failed" and verdict.tests.fail_to_pass_failed == ["tests/test_mul.py::test_mul"]
    assert verdict.needs_review and "tests/test_mul.py" in verdict.review_reasons[0]


def test_an_engine_gone_mid_judging_raises_instead_of_a_verdict(tmp_path: Path) -> None:
    mirror, base, patch, result = _result(tmp_path, {"calc/ops.py": FIXED_OPS})
    engine = FakeEngine(gate=fake_pytest)

    def dies(spec: ContainerSpec) -> RunResult:
        engine.go_down()
        return fake_pytest(spec)

    engine.gate = dies
    with pytest.raises(EngineUnavailableError):
        _judge(tmp_path, engine).judge(mirror, project(), make_task(base, patch), result)


def test_base_problems_are_infrastructure(tmp_path: Path) -> None:
    mirror, base, patch, result = _result(tmp_path, {"calc/ops.py": FIXED_OPS})

    def silent(spec: ContainerSpec) -> RunResult:
        return fake_pytest(spec).model_copy(update={"output": "ModuleNotFoundError: No module named pytest\n"})

    verdict = _judge(tmp_path, FakeEngine(gate=silent)).judge(mirror, project(), make_task(base, patch), result)
    assert verdict.outcome == "infrastructure" and "cannot run on the base" in verdict.reason
    assert not list((tmp_path / "cache").glob("*.json"))  # nothing cached from a run that failed
    for bad in ({"test_command": ["make", "test"]}, {"test_deadline_s": 100_000}):
        verdict = _judge(tmp_path, FakeEngine(gate=fake_pytest)).judge(
            mirror, project(**bad), make_task(base, patch), result
        )
        assert verdict.outcome == "infrastructure" and "test settings" in verdict.reason
    verdict = _judge(tmp_path, FakeEngine(gate=fake_pytest)).judge(
        mirror, project(), make_task("c" * 40, patch), result
    )
    assert verdict.outcome == "infrastructure" and "not in the project's mirror" in verdict.reason


def test_no_image_is_infrastructure_and_an_engine_down_while_building_raises(tmp_path: Path) -> None:
    mirror, base, patch, result = _result(tmp_path, {"calc/ops.py": FIXED_OPS})

    def no_image() -> str:
        raise RuntimeError("cannot build the agent image")

    def engine_down() -> str:
        raise EngineUnavailableError("no engine")

    engine = FakeEngine(gate=fake_pytest)
    judge = TaskJudge(engine, scratch=tmp_path / "s", instance="t", cache=tmp_path / "c", agent_image=no_image)
    verdict = judge.judge(mirror, project(), make_task(base, patch), result)
    assert verdict.outcome == "infrastructure" and "no image" in verdict.reason and not engine.calls
    judge.agent_image = engine_down
    with pytest.raises(EngineUnavailableError):
        judge.judge(mirror, project(), make_task(base, patch), result)
    assert judge.judge(mirror, project(image="mine"), make_task(base, patch), result).outcome == "passed"


def test_a_result_with_a_link_chain_out_of_the_tree_fails_without_a_container(tmp_path: Path) -> None:
    mirror, base, patch, _ = _result(tmp_path, {})
    git = Git(mirror)
    blob = git.out("hash-object", "-w", "--stdin", input=b"..")
    chain = git.out("hash-object", "-w", "--stdin", input=b"up/../etc/passwd")
    entries = git.ls_tree(base)
    entries += [TreeEntry("120000", "blob", blob, "calc/up"), TreeEntry("120000", "blob", chain, "calc/x.py")]
    tree = git.tree_from_entries(entries, tmp_path)
    result = git.commit_tree(tree, [base], "crafted")
    engine = FakeEngine(gate=fake_pytest)
    verdict = _judge(tmp_path, engine).judge(mirror, project(), make_task(base, patch), result)
    assert verdict.outcome == "failed" and "outside the tree" in verdict.reason and verdict.needs_review
    assert len(engine.calls) == 1  # the base only


def test_a_test_patch_that_no_longer_applies_is_infrastructure(tmp_path: Path) -> None:
    mirror, base, patch, result = _result(tmp_path, {"calc/ops.py": FIXED_OPS})
    stale = (
        patch.replace("+from calc.ops import mul", "+from calc.ops import mul")
        .replace("new file mode", "")
        .replace("--- /dev/null", "--- a/tests/test_mul.py")
    )
    engine = FakeEngine(gate=fake_pytest)
    for bad in (stale, "not a patch at all\n", "diff --git a/../x b/../x\n--- a/../x\n+++ b/../x\n@@ -0,0 +1 @@\n+x\n"):
        verdict = _judge(tmp_path, engine).judge(mirror, project(), make_task(base, bad), result)
        assert verdict.outcome == "infrastructure" and "test patch" in verdict.reason, verdict.reason
    assert not engine.calls


def test_a_base_run_past_its_deadline_is_infrastructure(tmp_path: Path) -> None:
    mirror, base, patch, result = _result(tmp_path, {"calc/ops.py": FIXED_OPS})

    def hangs(spec: ContainerSpec) -> RunResult:
        return fake_pytest(spec).model_copy(update={"timed_out": True, "exit_code": None, "output": "..."})

    verdict = _judge(tmp_path, FakeEngine(gate=hangs)).judge(mirror, project(), make_task(base, patch), result)
    assert verdict.outcome == "infrastructure" and "timeout" in verdict.reason and verdict.test_time_s == 0.5


def test_pyproject_changes_need_review_only_in_their_test_sections(tmp_path: Path) -> None:
    pyproject = '[project]\nname = "calc"\nversion = "0"\n'
    cases = {
        pyproject.replace('"0"', '"1"'): False,
        pyproject + '[tool.pytest.ini_options]\naddopts = "-p calc.forge"\n': True,
        pyproject + '[tool.coverage.run]\nomit = ["calc/*"]\n': True,
        "not [ toml": True,
    }
    for number, (content, flagged) in enumerate(cases.items()):
        root = tmp_path / str(number)
        mirror, base, _, result = _result(root, {"pyproject.toml": content})
        reasons = review_reasons(Git(mirror), base, result, frozenset(), [])
        assert bool(reasons) is flagged, (content, reasons)


def test_graft_lets_the_tests_layout_win_over_a_clashing_result(tmp_path: Path) -> None:
    mirror, base = make_mirror(tmp_path, {**project_files(), "calc/conftest.py": "X = 1\n"})
    git = Git(mirror)
    blob = git.out("hash-object", "-w", "--stdin", input=b"a file where a folder was\n")
    entries = [e for e in git.ls_tree(base) if not e.path.startswith("calc/")]
    entries += [TreeEntry("100644", "blob", blob, "calc"), TreeEntry("100644", "blob", blob, "README.md/inner.py")]
    entries = [e for e in entries if e.path != "README.md"]
    result = git.tree_from_entries(entries, tmp_path)
    tests = git.tree_from_entries(
        [*git.ls_tree(base), TreeEntry("100644", "blob", blob, "README.md")], tmp_path
    )  # the tests tree holds a file where the result has a folder
    judged = graft(git, tmp_path, result, tests, lambda path: is_task_test_path(path, frozenset({"README.md"})))
    paths = {e.path for e in git.ls_tree(judged)}
    assert "calc/conftest.py" in paths and "calc" not in paths
    assert "README.md" in paths and "README.md/inner.py" not in paths
