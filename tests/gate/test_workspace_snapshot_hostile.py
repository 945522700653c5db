"""The workspace snapshot against trees shaped to exhaust the supervisor: depth, path length, junk names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from supervisor.base.remove_tree import remove_tree
from supervisor.gate.config import GateConfig
from supervisor.gate.gatekeeper import Gatekeeper
from supervisor.gate.workspace_commit import MAX_DEPTH, MAX_PATH_BYTES, MAX_REFUSED, snapshot_workspace
from tests.gate.repo_factory import proposal

GITFILE = "gitdir: /x\n"


def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / ".git").write_text(GITFILE)
    (root / "kept.py").write_text("x = 1\n")
    return root


def nest(root: Path, depth: int, name: str = "d") -> None:
    """`depth` folders one inside the other, made through descriptors (no path is ever that long)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir(name, dir_fd=fd)
        child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(os.open("bottom.py", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
    os.close(fd)


def test_folders_nested_past_the_bound_are_refused_not_a_crash(tmp_path: Path) -> None:
    root = workspace(tmp_path)
    try:
        nest(root, 2000)  # a RecursionError escapes the gatekeeper's "fail closed" and crashes the loop
        snapshot = snapshot_workspace(root, tmp_path / "staging", GateConfig(), GITFILE)
        assert any(f"nested deeper than {MAX_DEPTH} folders" in item for item in snapshot.refused)
    finally:
        assert remove_tree(root, print)  # pytest's own clean-up of tmp_path recurses


def test_a_path_longer_than_the_bound_is_refused(tmp_path: Path) -> None:
    root = workspace(tmp_path)
    nest(root, 30, "n" * 200)  # 6,000 bytes: past PATH_MAX once under the staging folder
    snapshot = snapshot_workspace(root, tmp_path / "staging", GateConfig(), GITFILE)
    assert any(f"a path longer than {MAX_PATH_BYTES} bytes" in item for item in snapshot.refused)


def test_names_that_are_no_files_count_toward_the_bound(tmp_path: Path) -> None:
    """Empty folders, FIFOs and skipped names copy no file, but each costs a look and a refusal line."""
    root = workspace(tmp_path)
    for number in range(300):
        os.mkfifo(root / f"f{number}")
        (root / f"e{number}").mkdir()
        (root / f"s{number}.pyc").write_bytes(b"")
    with pytest.raises(OverflowError):
        snapshot_workspace(root, tmp_path / "staging", GateConfig(max_files=100), GITFILE)


def test_a_huge_folder_is_refused_before_it_is_listed_whole(tmp_path: Path) -> None:
    root = workspace(tmp_path)
    many = root / "many"
    many.mkdir()
    for number in range(500):
        os.mkfifo(many / f"f{number}")
    with pytest.raises(OverflowError):
        snapshot_workspace(root, tmp_path / "staging", GateConfig(max_files=100), GITFILE)


def test_the_list_of_refusals_is_bounded(tmp_path: Path) -> None:
    root = workspace(tmp_path)
    for number in range(500):
        os.mkfifo(root / f"f{number:03d}")
    snapshot = snapshot_workspace(root, tmp_path / "staging", GateConfig(), GITFILE)
    assert len(snapshot.refused) == MAX_REFUSED + 1
    assert snapshot.refused[0] == "f000: not a regular file, folder or symlink"
    assert snapshot.refused[-1] == f"and {500 - MAX_REFUSED} more refused"


def test_a_deep_workspace_is_rejected_by_the_gatekeeper(offline_gatekeeper: Gatekeeper) -> None:
    candidate = offline_gatekeeper.create_candidate()
    try:
        nest(Path(candidate.worktree), 2000)
        verdict = offline_gatekeeper.submit(candidate, proposal("deep"))
        assert verdict.state == "rejected"
        assert f"nested deeper than {MAX_DEPTH} folders" in verdict.reasons[0]
        assert not os.path.lexists(candidate.worktree)  # removed after the verdict, however deep
    finally:
        assert remove_tree(Path(candidate.worktree), print)
