"""The gate in real containers: each way a proposal must be rejected, approval, rollback, the CLI."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from supervisor.base.git_ops import MAIN_REF
from supervisor.gate.config import GateConfig
from supervisor.gate.gatekeeper import Gatekeeper
from supervisor.gate.rollback import RollbackError
from tests.gate.repo_factory import TEST_CALC, proposal, sample_files, write_tree

pytestmark = pytest.mark.docker

SUB = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"
TEST_SUB = "from agent.calc import sub\n\n\ndef test_sub():\n    assert sub(3, 1) == 2\n"


def _propose(gatekeeper: Gatekeeper, files: dict[str, str], delete: tuple[str, ...] = (), summary: str = "change"):
    candidate = gatekeeper.create_candidate()
    write_tree(Path(candidate.worktree), files)
    for relative in delete:
        (Path(candidate.worktree) / relative).unlink()
    return gatekeeper.submit(candidate, proposal(summary, why=f"why: {summary}"))


@pytest.fixture
def gatekeeper(gatekeeper_factory) -> Gatekeeper:
    gatekeeper = gatekeeper_factory(deadline=60)
    assert gatekeeper.genesis() == 0
    return gatekeeper


def test_passing_proposal_reaches_main_as_next_generation(gatekeeper: Gatekeeper) -> None:
    verdict = _propose(gatekeeper, {"agent/calc.py": SUB, "agent/tests/test_sub.py": TEST_SUB}, summary="add sub")
    assert verdict.state == "accepted" and verdict.generation == 1
    assert gatekeeper.main() == verdict.commit == gatekeeper.generations()[1]
    assert gatekeeper.git.message(verdict.commit).startswith("add sub\n\nwhy: add sub")
    assert gatekeeper.log.find("accepted", commit=verdict.commit) and gatekeeper.log.verify().ok
    journal = "".join(p.read_text() for p in gatekeeper.journal.root.rglob("notes.md"))
    assert "gate-accepted" in journal and "Generation: 1" in journal


def test_breaking_change_is_rejected_and_journaled(gatekeeper: Gatekeeper) -> None:
    main = gatekeeper.main()
    verdict = _propose(gatekeeper, {"agent/calc.py": "def add(a, b):\n    return a + b + (1 if a > 0 else 0)\n"})
    assert verdict.state == "rejected" and gatekeeper.main() == main
    assert {f.test_id for f in verdict.failures} == {"agent.tests.test_calc::test_add"}
    record = gatekeeper.store.load(verdict.candidate)
    assert gatekeeper.git.ref_value(record.rejected_ref) == verdict.commit  # kept for inspection
    assert gatekeeper.git.ref_value(record.branch) is None
    journal = "".join(p.read_text() for p in gatekeeper.journal.root.rglob("notes.md"))
    assert "gate-rejected" in journal and "agent.tests.test_calc::test_add" in journal


def test_deleting_a_test_is_rejected(gatekeeper: Gatekeeper) -> None:
    verdict = _propose(gatekeeper, {}, delete=("agent/tests/test_calc.py",))
    # The remaining suite is empty, and a shrunk suite is refused even when the rest passes.
    assert verdict.state == "rejected"
    verdict = _propose(
        gatekeeper,
        {"agent/tests/test_calc.py": "from agent.calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"},
    )
    assert verdict.state == "rejected" and "test_add_negative is missing" in verdict.reasons[0]


def test_weakened_test_under_the_same_name_is_caught_by_mains_tests(gatekeeper: Gatekeeper) -> None:
    weakened = TEST_CALC.replace("assert add(2, 3) == 5", "assert True")
    verdict = _propose(
        gatekeeper,
        {"agent/calc.py": "def add(a, b):\n    return 0 if a > 0 else a + b\n", "agent/tests/test_calc.py": weakened},
    )
    assert verdict.state == "rejected"
    gate = gatekeeper.store.load(verdict.candidate).gate
    # main's own tests run first, alone, on the candidate's code: the weakened copy never counts.
    assert [(p.name, p.ok) for p in gate.passes] == [("main-tests", False)]


def test_changing_an_existing_test_waits_for_approval(gatekeeper: Gatekeeper) -> None:
    grown = TEST_CALC + "\n\ndef test_add_zero():\n    assert add(0, 0) == 0\n"
    verdict = _propose(gatekeeper, {"agent/tests/test_calc.py": grown})
    assert verdict.state == "needs-approval" and gatekeeper.main() != verdict.commit
    verdict = gatekeeper.approve(verdict.candidate)
    assert verdict.state == "accepted" and gatekeeper.main() == verdict.commit
    second = _propose(gatekeeper, {"agent/tests/test_calc.py": grown + "\n# comment\n"})
    assert second.state == "needs-approval"
    assert gatekeeper.reject(second.candidate).state == "rejected"
    assert gatekeeper.main() == verdict.commit


def test_zero_tests_is_rejected(gatekeeper_factory) -> None:
    gatekeeper = gatekeeper_factory(
        files={
            "agent/__init__.py": "",
            "agent/tests/__init__.py": "",
            "agent/tests/helpers.py": "X = 1\n",
            "gate.toml": "[gate]\n",
        }
    )
    result = gatekeeper.gate_rev("main")
    assert not result.passed and "zero tests collected" in result.reasons[0]


def test_hanging_tests_are_killed_at_the_deadline(gatekeeper_factory) -> None:
    gatekeeper = gatekeeper_factory(deadline=4)
    gatekeeper.genesis()
    started = time.monotonic()
    verdict = _propose(
        gatekeeper, {"agent/tests/test_hang.py": "import time\n\n\ndef test_hang():\n    time.sleep(600)\n"}
    )
    took = time.monotonic() - started
    assert verdict.state == "rejected" and verdict.reasons[0].startswith("timeout")
    assert 4 <= took < 4 + 10


def test_missing_report_and_container_errors_fail_closed(gatekeeper: Gatekeeper) -> None:
    no_report = GateConfig(junit_option="--junitxml={path}.elsewhere")
    result = gatekeeper.gate_rev("main", config=no_report)
    assert not result.passed and "no usable test report" in result.reasons[0]
    broken_image = GateConfig(image="ouroboros-no-such-image:never")
    result = gatekeeper.gate_rev("main", config=broken_image)
    assert not result.passed and "container error" in result.reasons[0]


def test_exit_code_and_report_must_agree(gatekeeper_factory) -> None:
    # A run that writes a passing report but exits non-zero (e.g. a crash at teardown) is a failure.
    crash = "import os\n\n\ndef pytest_unconfigure(config):\n    os._exit(3)\n"
    gatekeeper = gatekeeper_factory(files={**sample_files(), "agent/tests/conftest.py": crash})
    result = gatekeeper.gate_rev("main")
    assert result.passes[0].counts["passed"] == 2
    assert not result.passed and "exited 3" in result.reasons[0]


def test_rollback_only_to_gated_commits_and_keeps_history(gatekeeper: Gatekeeper) -> None:
    first = _propose(gatekeeper, {"agent/calc.py": SUB, "agent/tests/test_sub.py": TEST_SUB})
    second = _propose(gatekeeper, {"README.md": "better readme\n"})
    bad = _propose(gatekeeper, {"agent/calc.py": "def add(a, b):\n    return 1\n"})
    assert (first.state, second.state, bad.state) == ("accepted", "accepted", "rejected")
    with pytest.raises(RollbackError, match="rejected"):
        gatekeeper.rollback(bad.commit)
    with pytest.raises(RollbackError, match="never passed"):
        gatekeeper.rollback(_unrelated(gatekeeper))
    result = gatekeeper.rollback()
    assert result.target == first.commit and gatekeeper.main() == first.commit
    assert gatekeeper.git.ref_value(result.kept_as) == second.commit  # history kept reachable
    assert gatekeeper.rollback("gen/0").target == gatekeeper.generations()[0]
    assert gatekeeper.log.verify().ok
    assert [r.kind for r in gatekeeper.log.records()].count("rollback") == 2


def _unrelated(gatekeeper: Gatekeeper) -> str:
    return gatekeeper.git.commit_tree(gatekeeper.git.tree_of("main"), [gatekeeper.main()], "never gated")


def test_new_conftest_that_forces_passes_is_caught(gatekeeper: Gatekeeper) -> None:
    forge = (
        "import pytest\n\n\n@pytest.hookimpl(hookwrapper=True)\ndef pytest_runtest_makereport(item, call):\n"
        "    outcome = yield\n    report = outcome.get_result()\n    report.outcome = 'passed'\n"
    )
    verdict = _propose(
        gatekeeper, {"agent/calc.py": "def add(a, b):\n    return 0\n", "agent/tests/conftest.py": forge}
    )
    assert verdict.state == "rejected"
    gate = gatekeeper.store.load(verdict.candidate).gate
    assert [(p.name, p.ok) for p in gate.passes] == [("main-tests", False)]


def test_main_moved_by_hand_is_gated_and_adopted_or_refused(gatekeeper: Gatekeeper) -> None:
    from supervisor.base.errors import OuroborosError

    main = gatekeeper.main()
    blob = gatekeeper.git.out("hash-object", "-w", "--stdin", input=b"operator notes\n")
    entries = gatekeeper.git.ls_tree(main)
    good_tree = gatekeeper.git.tree_from_entries(
        [*entries, type(entries[0])("100644", "blob", blob, "NOTES.md")], gatekeeper.scratch
    )
    good = gatekeeper.git.commit_tree(good_tree, [main], "operator: notes")
    gatekeeper.git.update_ref(MAIN_REF, good, main)
    assert gatekeeper.genesis() == 1 and gatekeeper.generations()[1] == good
    bad_blob = gatekeeper.git.out("hash-object", "-w", "--stdin", input=b"def add(a, b):\n    return 0\n")
    bad_tree = gatekeeper.git.tree_from_entries(
        [
            e if e.path != "agent/calc.py" else type(e)(e.mode, e.kind, bad_blob, e.path)
            for e in gatekeeper.git.ls_tree(good)
        ],
        gatekeeper.scratch,
    )
    gatekeeper.git.update_ref(MAIN_REF, gatekeeper.git.commit_tree(bad_tree, [good], "operator: oops"), good)
    with pytest.raises(OuroborosError, match="does not pass its own gate"):
        gatekeeper.genesis()


def test_inside_the_gate_the_tree_is_read_only_and_there_is_no_network(gatekeeper: Gatekeeper) -> None:
    probe = (
        "import os\nimport socket\n\nimport pytest\n\n\n"
        "def test_tree_is_read_only():\n    with pytest.raises(OSError):\n        open('/src/agent/x', 'w')\n\n\n"
        "def test_no_network():\n    with pytest.raises(OSError):\n"
        "        socket.create_connection(('1.1.1.1', 53), timeout=2)\n\n\n"
        "def test_unprivileged_with_tmp_home():\n    assert os.getuid() == 10001 and os.environ['HOME'] == '/tmp'\n"
    )
    verdict = _propose(gatekeeper, {"agent/tests/test_probe.py": probe})
    assert verdict.state == "accepted", verdict.reasons
