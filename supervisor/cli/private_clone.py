"""Gate a repository whose own git config we must not read, from a private mirror clone.

A CI checkout's `.git/config` may carry `includeIf.gitdir:…` (current actions/checkout writes one
for its credentials) or, in a hostile repository, filters and drivers that run programs. The gate
refuses to run git with such a config. Instead of trusting it, `supervisor gate` mirrors the
repository into a fresh bare clone with `--no-local` (objects travel through `git upload-pack`,
which git designs to be safe on untrusted repositories, and which runs no filters, hooks or
drivers) and judges the clone, whose config is git's default and ours.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import overload

from supervisor.base.git_ops import Git, GitError, find_common_dir, safe_env


def needs_private_clone(repo: Path) -> bool:
    common = find_common_dir(repo)
    return bool(Git(common).dangerous_config())


def private_clone(repo: Path, target: Path) -> Path:
    """A bare mirror of every ref (HEAD too, detached or not) of `repo` in `target`."""
    source = find_common_dir(repo)
    done = subprocess.run(
        [
            "git",
            "-c",
            "protocol.file.allow=always",
            "clone",
            "--quiet",
            "--mirror",
            "--no-local",
            "--no-hardlinks",
            str(source),
            str(target),
        ],
        env=safe_env(),
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise GitError(f"could not make a private clone of {source}: {done.stderr.decode(errors='replace').strip()}")
    # Every object of the source, also those no ref reaches (a linked worktree's detached HEAD):
    # objects are data, read the same way the gate reads them anyway; only the config stays behind.
    (target / "objects" / "info" / "alternates").write_text(str(source / "objects") + "\n")
    return target


_HEAD_VALUE = re.compile(r"^([0-9a-f]{40}|[0-9a-f]{64}|refs/[A-Za-z0-9._/-]+)$")


def worktree_head(start: Path) -> str | None:
    """The HEAD of the work tree at or above `start` (a commit id or a ref name), read from its files.

    `git` run on the common dir would answer with the main work tree's HEAD, not a linked
    worktree's; None for a bare repository (whose HEAD is the common dir's own).
    """
    start = Path(start).resolve()
    for directory in (start, *start.parents):
        dot_git = directory / ".git"
        if dot_git.is_dir():
            gitdir = dot_git
        elif dot_git.is_file():
            gitdir = (directory / dot_git.read_text().strip().removeprefix("gitdir:").strip()).resolve()
        else:
            continue
        try:
            value = (gitdir / "HEAD").read_text().strip().removeprefix("ref:").strip()
        except OSError:
            return None
        return value if _HEAD_VALUE.match(value) else None
    return None


@overload
def in_worktree(rev: str, head: str | None) -> str: ...
@overload
def in_worktree(rev: None, head: str | None) -> None: ...
@overload
def in_worktree(rev: str | None, head: str | None) -> str | None: ...
def in_worktree(rev: str | None, head: str | None) -> str | None:
    """`HEAD`, `HEAD~2`, `HEAD^` ... of this work tree, spelled so any clone of it understands."""
    if rev is None or head is None or not re.match(r"^HEAD($|[~^@])", rev):
        return rev
    return head + rev[len("HEAD") :]
