"""Builds small real agent repositories (bare, like an instance, or a normal clone) for the gate tests."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

from supervisor.store.protocol import Proposal

GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "HOME": "/nonexistent",
    "PATH": "/usr/bin:/bin",
}

CALC = "def add(a, b):\n    return a + b\n"
TEST_CALC = (
    "from agent.calc import add\n\n\n"
    "def test_add():\n    assert add(2, 3) == 5\n\n\n"
    "def test_add_negative():\n    assert add(-1, 1) == 0\n"
)
GATE_TOML = "[gate]\ndeadline_s = {deadline}\n"


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


def write_tree(root: Path, files: dict[str, str]) -> None:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def sample_files(deadline: float = 60) -> dict[str, str]:
    return {
        "agent/__init__.py": "",
        "agent/calc.py": CALC,
        "agent/tests/__init__.py": "",
        "agent/tests/test_calc.py": TEST_CALC,
        "agent/journal/README.md": "memory\n",
        "agent/goals/active.md": "- be useful\n",
        "gate.toml": GATE_TOML.format(deadline=deadline),
        "README.md": "sample agent\n",
    }


def make_repo(root: Path, bare: bool = True, deadline: float = 60, files: dict[str, str] | None = None) -> Path:
    """A repository whose main holds the sample agent; returns the path to pass as repo_path."""
    seed = root / "seed"
    seed.mkdir(parents=True)
    git(seed, "init", "-q", "-b", "main")
    write_tree(seed, files or sample_files(deadline))
    git(seed, "add", "-A")
    git(seed, "commit", "-q", "-m", "sample agent")
    if not bare:
        return seed
    target = root / "agent.git"
    git(root, "clone", "-q", "--bare", str(seed), str(target))
    return target


def proposal(summary: str = "change", why: str = "because") -> Proposal:
    return Proposal(
        version=1, kind="proposal", id=uuid.uuid4().hex, why=why, summary=summary, created_at="2026-11-25T00:00:00Z"
    )
