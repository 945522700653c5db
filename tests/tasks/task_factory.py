"""A tiny real project for the task-judge tests: a package with a bug, its tests, a hidden test patch."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from supervisor.base.git_ops import Git
from supervisor.store.projects import ProjectConfig
from supervisor.store.tasks.models import Task, TaskState
from tests.gate.repo_factory import git, write_tree

OPS = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a + b  # the bug\n"
FIXED_OPS = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n"
TEST_OPS = (
    "from calc.ops import add\n\n\n"
    "def test_add():\n    assert add(2, 3) == 5\n\n\n"
    "def test_add_zero():\n    assert add(0, 0) == 0\n"
)
HIDDEN_TEST = "from calc.ops import mul\n\n\ndef test_mul():\n    assert mul(3, 4) == 12\n"
F2P = ["tests/test_mul.py::test_mul"]


def project_files() -> dict[str, str]:
    return {
        "calc/__init__.py": "",
        "calc/ops.py": OPS,
        "tests/__init__.py": "",
        "tests/test_ops.py": TEST_OPS,
        "README.md": "a sample project\n",
        "pyproject.toml": '[project]\nname = "calc"\nversion = "0"\n',
    }


def make_mirror(root: Path, files: dict[str, str] | None = None) -> tuple[Path, str]:
    """A bare mirror of a one-commit project; returns (mirror, base commit)."""
    seed = root / "seed"
    seed.mkdir(parents=True)
    git(seed, "init", "-q", "-b", "main")
    write_tree(seed, files or project_files())
    git(seed, "add", "-A")
    git(seed, "commit", "-q", "-m", "sample project")
    mirror = root / "mirror.git"
    git(root, "clone", "-q", "--bare", str(seed), str(mirror))
    return mirror, git(seed, "rev-parse", "HEAD")


def make_patch(seed: Path, files: dict[str, str]) -> str:
    """A `git diff` adding `files` to the seed checkout, as a hidden test patch (the seed is left clean)."""
    write_tree(seed, files)
    git(seed, "add", "-A")
    patch = git(seed, "diff", "--cached", "--binary") + "\n"
    git(seed, "reset", "-q", "--hard")
    return patch


def hidden_patch(root: Path) -> str:
    return make_patch(root / "seed", {"tests/test_mul.py": HIDDEN_TEST})


def work_area(mirror: Path, base: str, dest: Path, files: dict[str, str] | None = None) -> Path:
    """The base exported as a plain folder (as the lead lays it out), then the agent's edits."""
    dest.mkdir(parents=True)
    Git(mirror).export_tree(base, dest)
    write_tree(dest, files or {})
    return dest


def make_task(base: str, test_patch: str = "", fail_to_pass: list[str] | None = None, **extra: object) -> Task:
    now = datetime.now(UTC)
    return Task.model_validate(
        {
            "id": 12,
            "project": "calc",
            "title": "mul is wrong",
            "base_commit": base,
            "state": TaskState.JUDGING,
            "created_at": now,
            "updated_at": now,
            "test_patch": test_patch,
            "fail_to_pass": F2P if fail_to_pass is None else fail_to_pass,
            **extra,
        }
    )


def project(**extra: object) -> ProjectConfig:
    return ProjectConfig.model_validate({"name": "calc", "source": "/nowhere", "test_deadline_s": 60, **extra})
