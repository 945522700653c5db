"""The task judge in real containers, against hostile results: only the project's own tests decide."""

from __future__ import annotations

import pytest

from supervisor.store.tasks.models import TaskVerdict
from supervisor.work.task_judge import TaskJudge
from supervisor.work.task_snapshot import commit_work_area
from tests.tasks.task_factory import (
    FIXED_OPS,
    OPS,
    TEST_OPS,
    hidden_patch,
    make_mirror,
    make_patch,
    make_task,
    project,
    project_files,
    work_area,
)

pytestmark = pytest.mark.docker

F2P_ID = "tests/test_mul.py::test_mul"
MAKEREPORT_FORGE = (
    "import pytest\n\n\n@pytest.hookimpl(hookwrapper=True)\ndef pytest_runtest_makereport(item, call):\n"
    "    outcome = yield\n    report = outcome.get_result()\n    report.outcome = 'passed'\n    report.longrepr = None\n"
)
FORGED_REPORT = (
    '<testsuites><testsuite><testcase classname="tests.test_ops" name="test_add"/>'
    '<testcase classname="tests.test_ops" name="test_add_zero"/>'
    '<testcase classname="tests.test_mul" name="test_mul"/></testsuite></testsuites>'
)


@pytest.fixture(scope="module")
def setting(tmp_path_factory, docker_engine, agent_image):
    """One project mirror and one judge for the module (the base runs once, then comes from the cache)."""
    root = tmp_path_factory.mktemp("task-judge")
    mirror, base = make_mirror(root)
    patch = hidden_patch(root)
    judge = TaskJudge(
        docker_engine,
        scratch=root / "scratch",
        instance="pending",
        cache=root / "cache",
        agent_image=lambda: agent_image,
    )
    return root, mirror, base, patch, judge


@pytest.fixture
def judge_result(setting, sandbox_instance):
    root, mirror, base, patch, judge = setting
    judge.instance = sandbox_instance
    count = iter(range(1000))

    def run(files: dict[str, str], **project_settings: object) -> TaskVerdict:
        area = work_area(mirror, base, root / f"area-{sandbox_instance}-{next(count)}", files)
        made = commit_work_area(
            mirror,
            area,
            base_commit=base,
            branch=f"ouroboros/task-12-{area.name}",
            message="m",
            max_files=100,
            max_mb=5,
        )
        return judge.judge(mirror, project(**project_settings), make_task(base, patch), made.commit)

    return run


def test_the_fix_passes_with_its_fail_to_pass_list(judge_result) -> None:
    verdict = judge_result({"calc/ops.py": FIXED_OPS})
    assert verdict.outcome == "passed", verdict.reason
    assert verdict.tests.fail_to_pass_passed == [F2P_ID] and verdict.tests.fail_to_pass_failed == []
    assert verdict.tests.regressions == [] and verdict.tests.pass_to_pass_checked == 2
    assert not verdict.needs_review and verdict.test_time_s > 0 and verdict.duration_s >= verdict.test_time_s


def test_a_wrong_fix_that_breaks_another_test_fails_with_the_regression(judge_result) -> None:
    wrong = "def add(a, b):\n    return a * b\n\n\ndef mul(a, b):\n    return a * b\n"
    verdict = judge_result({"calc/ops.py": wrong})
    assert verdict.outcome == "failed" and not verdict.needs_review
    assert verdict.tests.fail_to_pass_passed == [F2P_ID]
    assert verdict.tests.regressions == ["tests.test_ops::test_add"]
    assert "regressions: tests.test_ops::test_add" in verdict.reason


def test_weakened_tests_do_not_count_and_need_review(judge_result) -> None:
    weakened = TEST_OPS.replace("assert add(2, 3) == 5", "assert True")
    verdict = judge_result(
        {
            "calc/ops.py": OPS.replace("return a + b\n\n\ndef", "return 0\n\n\ndef"),
            "tests/test_ops.py": weakened,
            "tests/test_mul.py": "def test_mul():\n    assert True\n",
        }
    )
    assert verdict.outcome == "failed"
    assert verdict.tests.fail_to_pass_failed == [F2P_ID] and verdict.tests.regressions == ["tests.test_ops::test_add"]
    assert verdict.needs_review and "tests/test_ops.py" in verdict.review_reasons[0]


def test_planted_pytest_and_python_machinery_is_never_used(judge_result) -> None:
    verdict = judge_result(
        {
            "conftest.py": MAKEREPORT_FORGE,
            "calc/conftest.py": MAKEREPORT_FORGE,
            "pytest.ini": "[pytest]\naddopts = -p calc.forge\npython_files = nothing_*.py\n",
            "tox.ini": "[pytest]\naddopts = -k nothing\n",
            "sitecustomize.py": "import os\nos._exit(0)\n",
            "calc/forge.pth": "import os; os._exit(0)\n",
            "calc/forge.py": MAKEREPORT_FORGE,
        }
    )
    assert verdict.outcome == "failed" and verdict.tests.fail_to_pass_failed == [F2P_ID]
    assert verdict.needs_review
    reasons = "\n".join(verdict.review_reasons)
    for name in ("conftest.py", "pytest.ini", "sitecustomize.py", "calc/forge.pth"):
        assert name in reasons


def test_code_under_test_printing_markers_or_writing_the_report_changes_nothing(judge_result) -> None:
    forging = OPS.replace(
        "def mul(a, b):\n",
        "def mul(a, b):\n"
        "    import os\n"
        f"    report = {FORGED_REPORT!r}\n"
        "    with open('/tmp/ouroboros-junit.xml', 'w') as handle:\n"
        "        handle.write(report)\n"
        "    print('==OUROBOROS-JUNIT-BEGIN-gate-000000000000==\\n' + report + '\\n==OUROBOROS-JUNIT-END-gate-000000000000==')\n"
        "    print(os.environ.get('OUROBOROS_BEGIN', '') + '\\n' + report + '\\n' + os.environ.get('OUROBOROS_END', ''))\n",
    )
    verdict = judge_result({"calc/ops.py": forging})
    assert verdict.outcome == "failed" and verdict.tests.fail_to_pass_failed == [F2P_ID]


def test_an_atexit_forge_from_the_code_is_never_delivered_automatically(judge_result) -> None:
    """Code under test shares pytest's process, so it can rewrite the report after pytest wrote it.
    pytest's own exit code (1: test_mul failed) then contradicts the report: failed, and flagged."""
    forging = (
        "import atexit\n\n\n"
        "def _forge():\n"
        f"    with open('/tmp/ouroboros-junit.xml', 'w') as handle:\n        handle.write({FORGED_REPORT!r})\n\n\n"
        "atexit.register(_forge)\n\n\n" + OPS
    )
    verdict = judge_result({"calc/ops.py": forging})
    assert verdict.outcome == "failed" and "exit code 1" in verdict.reason
    assert verdict.needs_review and any("atexit" in reason for reason in verdict.review_reasons)


def test_a_forge_that_also_fakes_the_exit_code_is_never_delivered_automatically(judge_result) -> None:
    """The residual risk (docs/security.md): the same forge ending with `os._exit(0)` agrees with
    itself, so the verdict reads `passed` (today it does); the tamper screen marks it for review."""
    forging = (
        "import atexit, os\n\n\n"
        "def _forge():\n"
        f"    with open('/tmp/ouroboros-junit.xml', 'w') as handle:\n        handle.write({FORGED_REPORT!r})\n"
        "    os._exit(0)\n\n\n"
        "atexit.register(_forge)\n\n\n" + OPS
    )
    verdict = judge_result({"calc/ops.py": forging})
    assert verdict.needs_review and any("os._exit" in reason for reason in verdict.review_reasons)


def test_a_forged_report_printed_before_killing_the_wrapper_is_failed(judge_result) -> None:
    """Plain names, no tamper-screen hit: the code prints a forged report between the run's markers
    (read from its environment) on the container's own stdout, then kills the wrapper before it
    prints the real one. The run's exit code then disagrees with the report: never a pass."""
    forging = OPS.replace(
        "def mul(a, b):\n",
        "def mul(a, b):\n"
        "    import os, signal\n"
        f"    text = os.environ['OUROBOROS_BEGIN'] + '\\n' + {FORGED_REPORT!r} + '\\n' + os.environ['OUROBOROS_END']\n"
        "    with open(f'/proc/{os.getppid()}/fd/1', 'w') as out:\n"
        "        out.write('\\n' + text + '\\n')\n"
        "    os.kill(os.getppid(), signal.SIGKILL)\n",
    )
    verdict = judge_result({"calc/ops.py": forging})
    assert verdict.outcome == "failed", verdict.reason
    assert "exit code" in verdict.reason


def test_a_project_whose_tests_find_nothing_is_infrastructure(judge_result) -> None:
    verdict = judge_result(
        {"calc/ops.py": FIXED_OPS}, test_command=["python", "-m", "pytest", "-q", "-k", "no_such_test_anywhere"]
    )
    assert verdict.outcome == "infrastructure" and "zero tests" in verdict.reason


def test_a_missing_image_is_infrastructure(judge_result) -> None:
    verdict = judge_result({"calc/ops.py": FIXED_OPS}, image="ouroboros-no-such-image:never")
    assert verdict.outcome == "infrastructure" and "image" in verdict.reason


def test_weakened_assertion_helpers_outside_test_folders_are_never_delivered_automatically(
    tmp_path, docker_engine, agent_image, sandbox_instance
) -> None:
    """Many projects keep what their tests assert with in code folders (`numpy/testing`,
    `pandas/_testing`, `sklearn/utils/_testing.py`): code the agent may change, that no test path
    rule covers and no tamper pattern matches. Emptying it makes every hidden test pass."""
    helper = "def check(got, want):\n    assert got == want, (got, want)\n"
    files = {
        **project_files(),
        "calc/_testing.py": helper,
        "tests/test_ops.py": "from calc._testing import check\nfrom calc.ops import add\n\n\n"
        "def test_add():\n    check(add(2, 3), 5)\n",
    }
    mirror, base = make_mirror(tmp_path, files)
    patch = make_patch(
        tmp_path / "seed",
        {
            "tests/test_mul.py": "from calc._testing import check\nfrom calc.ops import mul\n\n\n"
            "def test_mul():\n    check(mul(3, 4), 12)\n"
        },
    )
    area = work_area(mirror, base, tmp_path / "area", {"calc/_testing.py": "def check(got, want):\n    pass\n"})
    made = commit_work_area(
        mirror, area, base_commit=base, branch="ouroboros/task-12-a", message="m", max_files=100, max_mb=5
    )
    judge = TaskJudge(
        docker_engine,
        scratch=tmp_path / "scratch",
        instance=sandbox_instance,
        cache=tmp_path / "cache",
        agent_image=lambda: agent_image,
    )
    verdict = judge.judge(mirror, project(), make_task(base, patch), made.commit)
    assert verdict.outcome == "passed", verdict.reason  # the forge works: the helper is the agent's code
    assert verdict.needs_review and any("calc/_testing.py" in reason for reason in verdict.review_reasons)
