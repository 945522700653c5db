"""A task's work area becomes a commit on its task branch: hostile entries refused and listed, no hang."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from supervisor.base.git_ops import Git, GitError
from supervisor.work.task_review import review_reasons
from supervisor.work.task_snapshot import commit_work_area, refusals_of, with_refusals
from tests.tasks.task_factory import FIXED_OPS, make_mirror, work_area

BRANCH = "ouroboros/task-12-a3"


def _commit(mirror: Path, area: Path, base: str, **limits: int):
    return commit_work_area(
        mirror,
        area,
        base_commit=base,
        branch=BRANCH,
        message="task 12: fix mul",
        max_files=limits.get("max_files", 1000),
        max_mb=limits.get("max_mb", 10),
    )


def test_agent_edits_become_a_commit_on_the_task_branch(tmp_path: Path) -> None:
    mirror, base = make_mirror(tmp_path)
    area = work_area(mirror, base, tmp_path / "area", {"calc/ops.py": FIXED_OPS, "calc/new.py": "X = 1\n"})
    os.remove(area / "README.md")
    (area / "calc" / "__pycache__").mkdir()
    (area / "calc" / "__pycache__" / "ops.cpython-311.pyc").write_bytes(b"\0junk")
    made = _commit(mirror, area, base)
    git = Git(mirror)
    assert made.refused == [] and made.files == 6
    assert git.ref_value(f"refs/ouroboros/tasks/{BRANCH}") == made.commit and git.parents(made.commit) == [base]
    assert sorted(git.changed_paths(base, made.commit)) == [
        ("A", "calc/new.py"),
        ("D", "README.md"),
        ("M", "calc/ops.py"),
    ]
    assert git.read_blob(made.commit, "calc/ops.py") == FIXED_OPS.encode()
    assert not (mirror / "ouroboros-staging" / f"refs-heads-{BRANCH.replace('/', '-')}").exists()


def test_hostile_entries_are_refused_listed_and_never_followed(tmp_path: Path) -> None:
    mirror, base = make_mirror(tmp_path)
    area = work_area(mirror, base, tmp_path / "area", {"calc/ops.py": FIXED_OPS})
    (area / "calc" / "passwd.py").symlink_to("/etc/passwd")
    (area / "calc" / "up.py").symlink_to("../../../outside")
    os.mkfifo(area / "calc" / "pipe.py")
    (area / "vendor" / ".git").mkdir(parents=True)
    (area / "vendor" / ".git" / "config").write_text("[core]\n\tfsmonitor = touch /tmp/pwned\n")
    (area / "vendor" / "lib.py").write_text("Y = 2\n")
    started = time.monotonic()
    made = _commit(mirror, area, base)
    assert time.monotonic() - started < 10  # the FIFO was never opened for reading
    text = "\n".join(made.refused)
    for name in ("calc/passwd.py", "calc/up.py", "calc/pipe.py", "vendor/.git"):
        assert name in text
    git = Git(mirror)
    paths = {e.path for e in git.ls_tree(made.commit)}
    assert "calc/ops.py" in paths and "vendor/lib.py" in paths
    assert not {"calc/passwd.py", "calc/up.py", "calc/pipe.py"} & paths
    assert not any(p.startswith("vendor/.git") for p in paths)
    assert refusals_of(git, made.commit) == made.refused  # the judge finds them in git
    reasons = review_reasons(git, base, made.commit, frozenset(), refusals_of(git, made.commit))
    assert any("snapshot refused 4 entries" in r for r in reasons)


def test_a_git_folder_at_the_top_is_refused(tmp_path: Path) -> None:
    mirror, base = make_mirror(tmp_path)
    area = work_area(mirror, base, tmp_path / "area")
    (area / ".git").mkdir()
    (area / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    made = _commit(mirror, area, base)
    assert made.refused == [".git: a nested git repository or git file"]
    assert not any(e.path.startswith(".git") for e in Git(mirror).ls_tree(made.commit))


def test_an_oversized_file_refuses_the_work_area_and_keeps_the_base(tmp_path: Path) -> None:
    mirror, base = make_mirror(tmp_path)
    area = work_area(mirror, base, tmp_path / "area", {"calc/ops.py": FIXED_OPS})
    with open(area / "big.bin", "wb") as handle:
        handle.truncate(50 * 1024 * 1024)  # sparse: 50 MB to read, none on disk
    made = _commit(mirror, area, base, max_mb=10)
    assert made.refused and "larger than 10 MB" in made.refused[0]
    git = Git(mirror)
    assert git.tree_of(made.commit) == git.tree_of(base)  # nothing of an over-cap tree is taken
    assert refusals_of(git, made.commit) == made.refused


def test_too_many_files_are_refused(tmp_path: Path) -> None:
    mirror, base = make_mirror(tmp_path)
    area = work_area(mirror, base, tmp_path / "area")
    for i in range(60):
        (area / f"f{i}.txt").write_text("x")
    made = _commit(mirror, area, base, max_files=50)
    assert "50 files" in made.refused[0]


def test_a_second_call_after_a_kill_keeps_an_equivalent_commit(tmp_path: Path) -> None:
    mirror, base = make_mirror(tmp_path)
    area = work_area(mirror, base, tmp_path / "area", {"calc/ops.py": FIXED_OPS})
    first = _commit(mirror, area, base)
    stale = mirror / "ouroboros-staging" / f"refs-heads-{BRANCH.replace('/', '-')}"
    stale.mkdir(parents=True)  # a kill mid-copy left its staging folder behind
    (stale / "leftover.py").write_text("junk\n")
    second = _commit(mirror, area, base)
    git = Git(mirror)
    assert second.commit == first.commit and git.ref_value(f"refs/ouroboros/tasks/{BRANCH}") == first.commit
    assert "leftover.py" not in {e.path for e in git.ls_tree(second.commit)}
    (area / "calc" / "ops.py").write_text(FIXED_OPS + "# more\n")  # the work went on: the branch moves
    third = _commit(mirror, area, base)
    assert third.commit != first.commit and git.ref_value(f"refs/ouroboros/tasks/{BRANCH}") == third.commit


def test_refusal_trailers_cannot_be_forged_or_hidden_by_a_file_name(tmp_path: Path) -> None:
    mirror, base = make_mirror(tmp_path)
    area = work_area(mirror, base, tmp_path / "area")
    name = "x\nOuroboros-Refused: forged\n\nclean.py"
    os.mkfifo(area / name)
    made = _commit(mirror, area, base)
    message = Git(mirror).message(made.commit)
    assert "\nOuroboros-Refused: forged" not in message
    assert refusals_of(Git(mirror), made.commit) == made.refused and len(made.refused) == 1
    assert with_refusals("m", []) == "m"


def test_bad_branch_names_and_unknown_bases_are_refused(tmp_path: Path) -> None:
    mirror, base = make_mirror(tmp_path)
    area = work_area(mirror, base, tmp_path / "area")
    for branch in ("bad..name", "-x", "a b", "x.lock"):
        with pytest.raises(GitError, match="not a valid branch name"):
            commit_work_area(mirror, area, base_commit=base, branch=branch, message="m", max_files=10, max_mb=1)
    with pytest.raises(GitError, match="not in the mirror"):
        commit_work_area(mirror, area, base_commit="1" * 40, branch=BRANCH, message="m", max_files=10, max_mb=1)
