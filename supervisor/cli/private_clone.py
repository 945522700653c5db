"""Gate a repository whose own git config we must not read, from a private mirror clone.

A CI checkout's `.git/config` may carry `includeIf.gitdir:…` (current actions/checkout writes one
for its credentials) or, in a hostile repository, filters and drivers that run programs. The gate
refuses to run git with such a config. Instead of trusting it, `supervisor gate` mirrors the
repository into a fresh bare clone with `--no-local` (objects travel through `git upload-pack`,
which git designs to be safe on untrusted repositories, and which runs no filters, hooks or
drivers) and judges the clone, whose config is git's default and ours.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from supervisor.git_ops import Git, GitError, find_common_dir, safe_env


def needs_private_clone(repo: Path) -> bool:
    common = find_common_dir(repo)
    return bool(Git(common).dangerous_config())


def private_clone(repo: Path, target: Path) -> Path:
    """A bare mirror of every ref (HEAD too, detached or not) of `repo` in `target`."""
    source = find_common_dir(repo)
    done = subprocess.run(
        ["git", "-c", "protocol.file.allow=always", "clone", "--quiet", "--mirror", "--no-local",
         "--no-hardlinks", str(source), str(target)],
        env=safe_env(), capture_output=True, check=False,
    )
    if done.returncode != 0:
        raise GitError(f"could not make a private clone of {source}: {done.stderr.decode(errors='replace').strip()}")
    # A non-bare checkout's HEAD is what `gate HEAD` means; the mirror copies it (detached or not).
    return target
