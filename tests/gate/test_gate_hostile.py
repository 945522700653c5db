"""A hostile agent against the gate, through the real `Gatekeeper.submit` path, real git, real Docker.

Every proposal here carries the same planted break, `word_count` reporting one word too many,
which `main`'s own test catches, plus one trick meant to get the break past the gate anyway. Each
is rejected (or held for approval) and `main` does not move.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.gate.gatekeeper import Gatekeeper
from tests.gate.repo_factory import proposal, sample_files, write_tree

pytestmark = pytest.mark.docker

WORDS = "def word_count(text):\n    return len(text.split())\n"
BROKEN = "def word_count(text):\n    return len(text.split()) + 1\n"
TEST_WORDS = (
    "from agent.words import word_count\n\n\ndef test_word_count():\n    assert word_count('one two three') == 3\n"
)
# A plugin that turns every failing test report into a pass (what the public tricks do).
FORGE = (
    "import pytest\n\n\n@pytest.hookimpl(hookwrapper=True)\ndef pytest_runtest_makereport(item, call):\n"
    "    outcome = yield\n    outcome.get_result().outcome = 'passed'\n"
)
# A new test module that, when imported beside main's tests, puts back a correct word_count.
REPAIR_AT_IMPORT = (
    "import agent.words\n\nagent.words.word_count = lambda text: len(text.split())\n\n\n"
    "def test_new():\n    assert True\n"
)


def hostile_files() -> dict[str, str]:
    return {**sample_files(), "agent/words.py": WORDS, "agent/tests/test_words.py": TEST_WORDS}


@pytest.fixture
def gatekeeper(gatekeeper_factory) -> Gatekeeper:
    gatekeeper = gatekeeper_factory(deadline=60, files=hostile_files())
    assert gatekeeper.genesis() == 0
    return gatekeeper


def _submit(gatekeeper: Gatekeeper, files: dict[str, str]):
    main = gatekeeper.main()
    candidate = gatekeeper.create_candidate()
    write_tree(Path(candidate.worktree), files)
    verdict = gatekeeper.submit(candidate, proposal("improve word_count"))
    assert gatekeeper.main() == main, "a hostile proposal moved main"
    return verdict, gatekeeper.store.load(candidate.id).gate


def test_a_new_test_module_cannot_repair_the_function_for_mains_tests(gatekeeper: Gatekeeper) -> None:
    verdict, gate = _submit(gatekeeper, {"agent/words.py": BROKEN, "agent/tests/test_aa_repair.py": REPAIR_AT_IMPORT})
    assert verdict.state == "rejected"
    assert [(p.name, p.ok) for p in gate.passes] == [("main-tests", False)]
    assert {f.test_id for f in verdict.failures} == {"agent.tests.test_words::test_word_count"}


def test_pytest_plugins_in_a_new_test_module_never_reach_mains_tests(gatekeeper: Gatekeeper) -> None:
    verdict, gate = _submit(
        gatekeeper,
        {
            "agent/words.py": BROKEN,
            "agent/forge.py": FORGE,
            "agent/tests/test_more.py": "pytest_plugins = ['agent.forge']\n\n\ndef test_more():\n    assert True\n",
        },
    )
    assert verdict.state == "rejected" and gate.passes[0].name == "main-tests" and not gate.passes[0].ok


@pytest.mark.parametrize(
    "config_file",
    ["agent/tests/pytest.toml", "agent/tests/.pytest.toml", "agent/.pytest.ini", "agent/tests/.pytest.ini"],
)
def test_pytest_config_files_in_the_tree_are_never_read(gatekeeper: Gatekeeper, config_file: str) -> None:
    addopts = 'addopts = ["-p", "agent.forge"]' if config_file.endswith("toml") else "addopts = -p agent.forge"
    failing_new_test = "def test_new_feature():\n    assert False\n"
    verdict, gate = _submit(
        gatekeeper,
        {
            "agent/words.py": BROKEN,
            "agent/forge.py": FORGE,
            config_file: f"[pytest]\n{addopts}\n",
            "agent/tests/test_new.py": failing_new_test,
        },
    )
    assert verdict.state == "rejected"
    assert not gate.passes[0].ok and "test_word_count" in gate.passes[0].reason
    # Even the candidate's own suite runs with the gate's config: its failing test stays failing.
    verdict, gate = _submit(
        gatekeeper,
        {"agent/forge.py": FORGE, config_file: f"[pytest]\n{addopts}\n", "agent/tests/test_new.py": failing_new_test},
    )
    assert verdict.state == "rejected"
    assert [(p.name, p.ok) for p in gate.passes] == [("main-tests", True), ("candidate", False)]
    assert {f.test_id for f in gate.failures} == {"agent.tests.test_new::test_new_feature"}


def test_a_sitecustomize_or_pth_in_the_tree_is_not_run(gatekeeper_factory) -> None:
    # On main itself (no candidate graft involved): Python starts isolated, so neither runs.
    marker = "import pathlib\npathlib.Path('/tmp/started').write_text('x')\n"
    probe = "import os\n\n\ndef test_nothing_ran_at_start_up():\n    assert not os.path.exists('/tmp/started')\n"
    gatekeeper = gatekeeper_factory(
        files={
            **hostile_files(),
            "sitecustomize.py": marker,
            "usercustomize.py": marker,
            "evil.pth": "import pathlib; pathlib.Path('/tmp/started').write_text('x')\n",
            "agent/tests/test_probe.py": probe,
        }
    )
    result = gatekeeper.gate_rev("main")
    assert result.passed, result.reasons


def test_tampering_with_pytest_waits_for_approval_and_show_says_why(gatekeeper: Gatekeeper) -> None:
    from click.testing import CliRunner

    from supervisor.cli import main as cli

    honest_code_with_exit_hook = WORDS + "\n\nimport atexit\n\natexit.register(print, 'bye')\n"
    verdict, gate = _submit(gatekeeper, {"agent/words.py": honest_code_with_exit_hook})
    assert verdict.state == "needs-approval" and gate.passed
    assert any("agent/words.py:5: atexit" in hit for hit in gate.tamper)
    shown = CliRunner().invoke(cli, ["show", verdict.candidate, "--repo", str(gatekeeper.common)])
    assert shown.exit_code == 0 and "pytest or Python start-up machinery" in shown.output
    assert "agent/words.py:5: atexit" in shown.output
    # With the break as well, it is simply rejected: approval never overrides a failing gate.
    verdict, _ = _submit(gatekeeper, {"agent/words.py": BROKEN + "\nimport os\nos._exit(0)\n"})
    assert verdict.state == "rejected"


def test_an_honest_feature_with_its_test_is_accepted_with_every_pass(gatekeeper: Gatekeeper) -> None:
    feature = WORDS + "\n\ndef char_count(text):\n    return len(text)\n"
    test = "from agent.words import char_count\n\n\ndef test_char_count():\n    assert char_count('abc') == 3\n"
    main = gatekeeper.main()
    candidate = gatekeeper.create_candidate()
    write_tree(Path(candidate.worktree), {"agent/words.py": feature, "agent/tests/test_chars.py": test})
    verdict = gatekeeper.submit(candidate, proposal("add char_count"))
    assert verdict.state == "accepted" and gatekeeper.main() != main
    gate = gatekeeper.store.load(candidate.id).gate
    assert [(p.name, p.ok) for p in gate.passes] == [("main-tests", True), ("candidate", True)]
    assert gate.passes[0].counts["passed"] == 3 and gate.passes[1].counts["passed"] == 4
