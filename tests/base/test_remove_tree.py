"""remove_tree on a tree the agent shaped: it never raises, however deep the tree."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from supervisor.base.remove_tree import remove_tree


def test_a_tree_deeper_than_the_recursion_limit_is_removed(tmp_path: Path) -> None:
    root = tmp_path / "worktree"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(2000):  # shutil.rmtree recurses once per level: RecursionError, not an OSError
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(fd)
    os.symlink(tmp_path / "outside", root / "link")  # still never followed
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "keep").write_text("host")
    warnings: list[str] = []
    try:
        assert remove_tree(root, warnings.append)
        assert not root.exists() and warnings == []
        assert (tmp_path / "outside" / "keep").read_text() == "host"
    finally:
        subprocess.run(["rm", "-rf", "--", str(root)], check=True)  # pytest's own clean-up of tmp_path recurses


def test_a_link_file_or_fifo_where_the_tree_was_is_unlinked_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("mine")
    (tmp_path / "link").symlink_to(outside)
    (tmp_path / "file").write_text("x")
    os.mkfifo(tmp_path / "fifo")
    for name in ("link", "file", "fifo"):
        assert remove_tree(tmp_path / name, pytest.fail) is True
        assert not os.path.lexists(tmp_path / name)
    assert (outside / "keep").read_text() == "mine"
