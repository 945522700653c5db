"""Turning an agent's workspace into a commit safely.

The workspace is hostile. It is never handed to git directly: a race-free walk (directory file
descriptors, `O_NOFOLLOW`, `lstat`) copies regular files and in-tree symlinks into a private
staging folder, refusing nested `.git`, symlinks that leave the tree, a tampered worktree `.git`
file and oversized trees. Git then hashes the staging folder with a private index file.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from supervisor.base.git_ops import Git
from supervisor.base.text import printable
from supervisor.gate.config import GateConfig

if TYPE_CHECKING:
    from supervisor.store.candidates import CandidateRecord

SKIPPED_NAMES = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis"}


# -- workspace → staging copy ------------------------------------------------------------------


class Snapshot(BaseModel):
    model_config = ConfigDict(extra="forbid")

    files: int = 0
    bytes: int = 0
    refused: list[str] = Field(default_factory=list)


class _Limits:
    def __init__(self, config: GateConfig) -> None:
        self.max_bytes = config.max_snapshot_mb * 1024 * 1024
        self.max_files = config.max_files


def snapshot_workspace(workspace: Path, staging: Path, config: GateConfig, gitfile: str) -> Snapshot:
    """Copy the workspace into `staging` without ever following a link; report what was refused."""
    result = Snapshot()
    root_fd = os.open(workspace, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        _check_gitfile(root_fd, gitfile, result)
        staging.mkdir(parents=True, exist_ok=True)
        _copy_folder(root_fd, staging, "", config, _Limits(config), result)
    finally:
        os.close(root_fd)
    return result


def _check_gitfile(root_fd: int, expected: str, result: Snapshot) -> None:
    try:
        info = os.stat(".git", dir_fd=root_fd, follow_symlinks=False)
    except FileNotFoundError:
        result.refused.append(".git: the worktree's .git file was removed")
        return
    if not stat.S_ISREG(info.st_mode):
        result.refused.append(".git: replaced by a folder or link (a planted repository, hooks or config)")
        return
    content = _read_at(root_fd, ".git", 4096)
    if content is None or content.decode(errors="replace") != expected:
        result.refused.append(".git: the worktree's .git file was rewritten to point elsewhere")


def _copy_folder(dir_fd: int, dest: Path, prefix: str, config: GateConfig, limits: _Limits, result: Snapshot) -> None:
    for name in sorted(os.listdir(dir_fd)):
        relative = prefix + name
        if not _encodable(name):
            result.refused.append(f"{printable(relative)}: a file name that is not valid UTF-8")
            continue
        if relative == ".git" or name in SKIPPED_NAMES or name.endswith((".pyc", ".pyo")):
            continue
        if config.is_memory_path(relative) or config.is_memory_path(relative + "/"):
            continue
        if name == ".git":
            result.refused.append(f"{relative}: a nested git repository or git file")
            continue
        try:
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            result.refused.append(f"{relative}: vanished while being read")
            continue
        if stat.S_ISLNK(info.st_mode):
            _copy_link(dir_fd, name, relative, dest / name, result)
        elif stat.S_ISDIR(info.st_mode):
            _copy_subfolder(dir_fd, name, dest / name, relative + "/", config, limits, result)
        elif stat.S_ISREG(info.st_mode):
            _copy_file(dir_fd, name, relative, dest / name, limits, result)
        else:
            result.refused.append(f"{relative}: not a regular file, folder or symlink")
        if result.files > limits.max_files or result.bytes > limits.max_bytes:
            raise OverflowError


def _copy_subfolder(
    dir_fd: int, name: str, dest: Path, prefix: str, config: GateConfig, limits: _Limits, result: Snapshot
) -> None:
    try:
        child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError:
        result.refused.append(f"{prefix[:-1]}: changed while being read")
        return
    try:
        dest.mkdir()
        _copy_folder(child, dest, prefix, config, limits, result)
    finally:
        os.close(child)


def _encodable(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # os.listdir hands undecodable bytes back as lone surrogates
        return False
    return True


def _copy_link(dir_fd: int, name: str, relative: str, dest: Path, result: Snapshot) -> None:
    try:
        target = os.readlink(name, dir_fd=dir_fd)
    except OSError:
        result.refused.append(f"{relative}: changed while being read")
        return
    if not _encodable(target):
        result.refused.append(f"{relative}: a symlink target that is not valid UTF-8")
        return
    landing = posixpath.normpath(posixpath.join(posixpath.dirname(relative), target))
    if posixpath.isabs(target) or landing == ".." or landing.startswith("../") or landing.split("/")[0] == ".git":
        result.refused.append(f"{relative}: symlink to {target!r} leaves the tree")
        return
    os.symlink(target, dest)
    result.files += 1


def _copy_file(dir_fd: int, name: str, relative: str, dest: Path, limits: _Limits, result: Snapshot) -> None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        result.refused.append(f"{relative}: changed while being read")
        return
    with os.fdopen(fd, "rb") as source:
        info = os.fstat(source.fileno())
        if not stat.S_ISREG(info.st_mode):
            result.refused.append(f"{relative}: not a regular file")
            return
        room = limits.max_bytes - result.bytes + 1
        # Asked for what the file holds (plus one byte, to see it grow), never for the whole room:
        # a read of n bytes allocates n bytes first, ~200 MB for every file of a snapshot.
        data = source.read(min(room, info.st_size + 1))
        if len(data) > info.st_size and len(data) < room:
            result.refused.append(f"{relative}: changed while being read")
            return
    executable = bool(info.st_mode & stat.S_IXUSR)
    with open(
        os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o755 if executable else 0o644), "wb"
    ) as target:
        target.write(data)
    result.files += 1
    result.bytes += len(data)


def _read_at(dir_fd: int, name: str, limit: int) -> bytes | None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        return handle.read(limit)


# -- staging → commit ----------------------------------------------------------------------------


def commit_snapshot(git: Git, base: str, staging: Path, scratch: Path, config: GateConfig, message: str) -> str:
    """Commit the staging folder on top of `base`; memory paths keep the base's content."""
    index = scratch / f"index-{staging.name}"
    index.unlink(missing_ok=True)
    excludes = [f":(top,exclude){folder}" for folder in config.memory_paths]
    try:
        git.run("read-tree", base, index_file=index)
        git.run("add", "-A", "--", ":(top)", *excludes, work_tree=staging, index_file=index)
        tree = git.out("write-tree", index_file=index)
    finally:
        index.unlink(missing_ok=True)
    return git.commit_tree(tree, [base], message)


def make_candidate_commit(
    git: Git, record: CandidateRecord, config: GateConfig, scratch: Path, message: str
) -> tuple[str, Snapshot]:
    """Snapshot the candidate's worktree and commit it; the staging folder is always removed."""
    staging = scratch / f"stage-{record.id}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        try:
            snapshot = snapshot_workspace(Path(record.worktree), staging, config, record.gitfile)
        except OverflowError:
            snapshot = Snapshot(
                refused=[f"workspace larger than {config.max_snapshot_mb} MB or {config.max_files} files"]
            )
        except FileNotFoundError:
            snapshot = Snapshot(refused=["the candidate worktree is gone"])
        if snapshot.refused and not staging.exists():
            return git.commit_tree(git.tree_of(record.base), [record.base], message), snapshot
        if snapshot.refused and snapshot.files == 0:
            return git.commit_tree(git.tree_of(record.base), [record.base], message), snapshot
        commit = commit_snapshot(git, record.base, staging, scratch, config, message)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return commit, snapshot
