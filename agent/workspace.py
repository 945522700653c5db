"""Confinement to the workspace, and which paths are the agent's own source (protected while executing)."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from agent.errors import PathEscapeError, ProtectedPathError

# Memory folders inside agent/ that stay writable in every phase.
MEMORY_DIRS = ("agent/journal", "agent/goals")
# The agent's own source: changeable only in the reflection phase (and only via a proposal).
SOURCE_PATHS = ("agent", "scripted_model", "gate.toml")


def resolve_inside(workspace: Path, path: str | os.PathLike[str]) -> Path:
    """Resolve `path` (relative to the workspace, or absolute) and follow symlinks; refuse any escape."""
    root = workspace.resolve()
    candidate = Path(path)
    if not str(path).strip():
        raise PathEscapeError("empty path; give a path relative to the workspace")
    full = candidate if candidate.is_absolute() else root / candidate
    resolved = Path(os.path.realpath(full))
    if resolved != root and root not in resolved.parents:
        raise PathEscapeError(
            f"{path} resolves to {resolved}, outside the workspace {root}; use a path inside the workspace"
        )
    return resolved


def relative_posix(workspace: Path, resolved: Path) -> str:
    """The workspace-relative POSIX form of an already resolved path ('.' for the root)."""
    return PurePosixPath(resolved.relative_to(workspace.resolve())).as_posix()


def is_agent_source(relative: str) -> bool:
    """True for agent/** (except memory), scripted_model/** and gate.toml."""
    rel = PurePosixPath(relative).as_posix()
    if any(rel == d or rel.startswith(d + "/") for d in MEMORY_DIRS):
        return False
    return any(rel == p or rel.startswith(p + "/") for p in SOURCE_PATHS)


def check_write_allowed(workspace: Path, resolved: Path, phase: str) -> None:
    """Refuse writes to the agent's own source unless in the reflection phase."""
    relative = relative_posix(workspace, resolved)
    if phase != "reflect" and is_agent_source(relative):
        raise ProtectedPathError(
            f"refused: {relative} is the agent's own source and may only change in the reflection phase; "
            "finish the task without it and note the idea for reflection"
        )
