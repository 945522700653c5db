"""Turning an agent's workspace into a commit safely.

The workspace is hostile. It is never handed to git directly: a race-free walk (directory file
descriptors, `O_NOFOLLOW`, `lstat`: supervisor/base/safe_fs.py) copies regular files and in-tree symlinks into a private
staging folder, refusing nested `.git`, symlinks that leave the tree, a tampered worktree `.git`
file and oversized trees. Every name walked counts (an empty folder, a FIFO or a skipped name costs a
look too), folders nest at most MAX_DEPTH deep (the walk recurses and holds one descriptor per
level), paths stay under MAX_PATH_BYTES (the staging copy and git must be able to name them), and at
most MAX_REFUSED refusals are spelled out. Git then hashes the staging folder with a private index file.
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
from supervisor.base.safe_fs import Access, Bound, Folder, Kind, Refusal, UnsafeFileError, is_utf8, open_regular
from supervisor.base.text import printable
from supervisor.gate.config import GateConfig

if TYPE_CHECKING:
    from supervisor.store.candidates import CandidateRecord

SKIPPED_NAMES = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis"}
MAX_DEPTH = 100  # folders inside folders; far beyond any real tree, far below the recursion limit
MAX_PATH_BYTES = 2048  # a relative path; the staging folder's own path must still fit under PATH_MAX
MAX_REFUSED = 50  # refusals spelled out in the verdict; the rest are counted


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
        self.names_left = 2 * config.max_files  # every name walked, copied or not


def snapshot_workspace(workspace: Path, staging: Path, config: GateConfig, gitfile: str | None) -> Snapshot:
    """Copy the workspace into `staging` without ever following a link; report what was refused.

    `gitfile`: the content the worktree's `.git` file must have; None for a plain folder (a task's
    work area), where any top-level `.git` is refused like a nested one.
    """
    result = Snapshot()
    with Folder.open(workspace) as root:
        if gitfile is None:
            if root.kind(".git") is not Kind.MISSING:
                result.refused.append(".git: a nested git repository or git file")
        else:
            _check_gitfile(root, gitfile, result)
        staging.mkdir(parents=True, exist_ok=True)
        _copy_folder(root, staging, "", config, _Limits(config), result)
    if len(result.refused) > MAX_REFUSED:
        result.refused[MAX_REFUSED:] = [f"and {len(result.refused) - MAX_REFUSED} more refused"]
    return result


def _check_gitfile(root: Folder, expected: str, result: Snapshot) -> None:
    kind = root.kind(".git")
    if kind is Kind.MISSING:
        result.refused.append(".git: the worktree's .git file was removed")
        return
    if kind is not Kind.FILE:
        result.refused.append(".git: replaced by a folder or link (a planted repository, hooks or config)")
        return
    try:
        content = root.read(".git", 4096, Bound.CUT).data.decode(errors="replace")
    except OSError:
        content = None
    if content != expected:
        result.refused.append(".git: the worktree's .git file was rewritten to point elsewhere")


def _copy_folder(
    folder: Folder, dest: Path, prefix: str, config: GateConfig, limits: _Limits, result: Snapshot
) -> None:
    try:
        entries = folder.entries(limit=limits.names_left)
    except UnsafeFileError as exc:
        raise OverflowError from exc
    limits.names_left -= len(entries)
    for entry in entries:
        name = entry.name
        relative = prefix + name
        if not is_utf8(name):
            result.refused.append(f"{printable(relative)}: a file name that is not valid UTF-8")
            continue
        if len(relative.encode()) > MAX_PATH_BYTES:
            result.refused.append(f"{relative[:200]}...: a path longer than {MAX_PATH_BYTES} bytes")
            continue
        if relative == ".git" or name in SKIPPED_NAMES or name.endswith((".pyc", ".pyo")):
            continue
        if config.is_memory_path(relative) or config.is_memory_path(relative + "/"):
            continue
        if name == ".git":
            result.refused.append(f"{relative}: a nested git repository or git file")
            continue
        if entry.kind is Kind.MISSING:
            result.refused.append(f"{relative}: vanished while being read")
        elif entry.kind is Kind.LINK:
            _copy_link(folder, name, relative, dest / name, result)
        elif entry.kind is Kind.FOLDER:
            _copy_subfolder(folder, name, dest / name, relative + "/", config, limits, result)
        elif entry.kind is Kind.FILE:
            _copy_file(folder, name, relative, dest / name, limits, result)
        else:
            result.refused.append(f"{relative}: not a regular file, folder or symlink")
        if result.files > limits.max_files or result.bytes > limits.max_bytes:
            raise OverflowError


def _copy_subfolder(
    folder: Folder, name: str, dest: Path, prefix: str, config: GateConfig, limits: _Limits, result: Snapshot
) -> None:
    if prefix.count("/") > MAX_DEPTH:
        result.refused.append(f"{prefix[:200]}...: folders nested deeper than {MAX_DEPTH} folders")
        return
    try:
        child = folder.folder(name)
    except OSError:
        result.refused.append(f"{prefix[:-1]}: changed while being read")
        return
    with child:
        dest.mkdir()
        _copy_folder(child, dest, prefix, config, limits, result)


def _copy_link(folder: Folder, name: str, relative: str, dest: Path, result: Snapshot) -> None:
    try:
        target = folder.readlink(name)
    except OSError:
        result.refused.append(f"{relative}: changed while being read")
        return
    if not is_utf8(target):
        result.refused.append(f"{relative}: a symlink target that is not valid UTF-8")
        return
    landing = posixpath.normpath(posixpath.join(posixpath.dirname(relative), target))
    if posixpath.isabs(target) or landing == ".." or landing.startswith("../") or landing.split("/")[0] == ".git":
        result.refused.append(f"{relative}: symlink to {target!r} leaves the tree")
        return
    os.symlink(target, dest)
    result.files += 1


def _copy_file(folder: Folder, name: str, relative: str, dest: Path, limits: _Limits, result: Snapshot) -> None:
    try:
        # Never more than the room left (plus one byte, to see it overflow) nor than the file holds
        # (plus one, to see it grow): a read of n bytes allocates n bytes first.
        content = folder.read(name, limits.max_bytes - result.bytes)
    except UnsafeFileError as exc:
        if exc.refusal is Refusal.TOO_LARGE:
            raise OverflowError from exc
        reason = "not a regular file" if exc.refusal is Refusal.NOT_REGULAR else "changed while being read"
        result.refused.append(f"{relative}: {reason}")
        return
    except OSError:
        result.refused.append(f"{relative}: changed while being read")
        return
    if content.grew:
        result.refused.append(f"{relative}: changed while being read")
        return
    executable = bool(content.mode & stat.S_IXUSR)
    with open(open_regular(dest, Access.WRITE, create=0o755 if executable else 0o644, exclusive=True), "wb") as target:
        target.write(content.data)
    result.files += 1
    result.bytes += len(content.data)


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
        snapshot = take_snapshot(Path(record.worktree), staging, config, record.gitfile, "the candidate worktree")
        return commit_staging(git, record.base, staging, snapshot, scratch, config, message), snapshot
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def take_snapshot(workspace: Path, staging: Path, config: GateConfig, gitfile: str | None, what: str) -> Snapshot:
    """`snapshot_workspace`, with a tree over the limits or a vanished `what` turned into a refusal."""
    try:
        return snapshot_workspace(workspace, staging, config, gitfile)
    except OverflowError:
        return Snapshot(
            refused=[
                f"workspace larger than {config.max_snapshot_mb} MB or {config.max_files} files "
                f"({2 * config.max_files} names of any kind)"
            ]
        )
    except FileNotFoundError:
        return Snapshot(refused=[f"{what} is gone"])
    except UnsafeFileError as exc:  # the root itself replaced by a link or a file: never followed
        return Snapshot(refused=[f"{what} is not a folder ({exc.reason}); nothing in it was taken"])


def commit_staging(
    git: Git, base: str, staging: Path, snapshot: Snapshot, scratch: Path, config: GateConfig, message: str
) -> str:
    """The staging copy committed on `base`; the base's own tree when the snapshot kept nothing."""
    if snapshot.refused and (not staging.exists() or snapshot.files == 0):
        return git.commit_tree(git.tree_of(base), [base], message)
    return commit_snapshot(git, base, staging, scratch, config, message)
