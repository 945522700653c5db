"""Undo changes to the agent's own source made during execution by other means than write_file.

write_file refuses protected paths itself; a shell command (run_command) could still write there,
so the execute step runs inside a snapshot of the source that is restored afterwards.
"""

from __future__ import annotations

import os
from pathlib import Path

from agent.workspace import SOURCE_PATHS, is_agent_source

_SKIP = {"__pycache__", ".pytest_cache"}


def _source_files(workspace: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for top in SOURCE_PATHS:
        root = workspace / top
        candidates = [root] if root.is_file() else (root.rglob("*") if root.is_dir() else [])
        for path in candidates:
            if path.is_symlink() or not path.is_file() or _SKIP.intersection(path.parts):
                continue
            rel = path.relative_to(workspace).as_posix()
            if is_agent_source(rel):
                files[rel] = path.read_bytes()
    return files


class SourceSnapshot:
    """Contents of every agent-source file at one moment."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.files = _source_files(workspace)

    def restore(self) -> list[str]:
        """Put changed, deleted and added source files back as they were; return the paths touched."""
        now = _source_files(self.workspace)
        touched = sorted({p for p in self.files if now.get(p) != self.files[p]} | (now.keys() - self.files.keys()))
        for rel in touched:
            target = self.workspace / rel
            if rel in self.files:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(self.files[rel])
            else:
                os.unlink(target)
        return touched
