"""`supervisor gate HEAD` in a linked worktree judges that worktree's HEAD, not the main checkout's
(git run on the common dir would answer with the main checkout's HEAD)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gate.repo_factory import git, make_repo, write_tree
from tests.operator.conftest import cli, cli_json

pytestmark = pytest.mark.docker


def test_gate_head_of_a_linked_worktree(tmp_path: Path, docker_engine, agent_image, monkeypatch) -> None:
    repo = make_repo(tmp_path / "src", bare=False)  # main: the sample agent, its tests pass
    worktree = tmp_path / "feature"
    git(repo, "worktree", "add", "-q", "-b", "feature", str(worktree))
    write_tree(worktree, {"agent/calc.py": "def add(a, b):\n    return 0\n"})
    git(worktree, "commit", "-qam", "break add")
    broken = git(worktree, "rev-parse", "HEAD")
    monkeypatch.chdir(worktree)
    result = cli_json("gate", "HEAD", code=1)
    assert result["commit"] == broken and not result["passed"]
    monkeypatch.chdir(repo)
    assert "gate PASS" in cli("gate", "HEAD")[1]
