"""Removing a folder the agent wrote (a worktree, a scratch area) without ever raising.

The caller stops the agent first, so nothing writes into the tree meanwhile. `shutil.rmtree` never
follows symlinks (it works on file descriptors on Linux); folders the agent made unwritable are
made writable and tried again. A tree nested deeper than Python's recursion limit (an agent can
make one) goes through `rm -rf`, which walks any depth. What still cannot go is reported, and the
next start retries. A link, file or FIFO at `path` itself is unlinked (a link is never followed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any


def remove_tree(path: Path, warn: Callable[[str], None]) -> bool:
    """True once `path` is gone; never raises."""
    problems: list[str] = []

    def retry(function: Callable[..., Any], target: str, info: Any) -> None:
        try:
            os.chmod(os.path.dirname(target), 0o700)
            function(target)
        except FileNotFoundError:
            pass
        except OSError as exc:
            problems.append(f"{target}: {exc.strerror}")

    for _ in range(3):
        if not os.path.lexists(path):
            return True
        problems.clear()
        try:
            if not os.path.isdir(path) or os.path.islink(path):
                os.unlink(path)  # a link (never followed), a file or a FIFO where a folder was expected
                continue
            shutil.rmtree(path, onerror=retry)
        except RecursionError:
            _remove_deep(path, problems)
        except OSError as exc:
            problems.append(str(exc))
    if os.path.lexists(path):
        warn(f"could not remove {path} yet ({'; '.join(problems[:3])}); the next start retries")
        return False
    return True


def _remove_deep(path: Path, problems: list[str]) -> None:
    """`rm -rf` (no link followed, one filesystem): for a tree too deep for `shutil.rmtree`'s recursion."""
    try:
        done = subprocess.run(
            ["rm", "-rf", "--one-file-system", "--", str(path)], capture_output=True, timeout=600, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        problems.append(f"rm -rf: {exc}")
        return
    if done.returncode != 0:
        problems.append(f"rm -rf: {done.stderr.decode(errors='replace')[:300]}")
