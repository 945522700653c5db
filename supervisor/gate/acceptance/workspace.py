"""The host folders of one acceptance run: the candidate's code, a fresh workspace, outbox and socket.

The code is the candidate commit's whole tree from git objects (never a work tree), as the live
agent's /code is its generation's whole tree: a candidate that looked for a file beside `agent/`
would otherwise see a difference. Scenarios live with the supervisor, never in the agent's
repository. Fixtures are written without following any link the candidate's tree may hold.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path, PurePosixPath

from supervisor.base.errors import OuroborosError
from supervisor.base.git_ops import Git
from supervisor.base.safe_fs import Access, Folder, Refusal, UnsafeFileError
from supervisor.gate.agent_container import COMPLETE, give_to_agent

AGENT_DIR = "agent"
MEMORY = ("agent/journal", "agent/goals")


class WorkspaceError(OuroborosError):
    """A scenario's workspace could not be laid out (e.g. a fixture path runs through a link)."""


def export_candidate(git: Git, commit: str, dest: Path) -> Path:
    """`dest` holds the commit's tree, from git objects, as the live agent's code does; returns dest."""
    if git.run("cat-file", "-e", f"{commit}:{AGENT_DIR}", check=False).returncode != 0:
        raise WorkspaceError(f"commit {commit[:12]} has no {AGENT_DIR}/ folder to run")
    dest.mkdir(parents=True)
    git.export_tree(commit, dest)
    (dest / COMPLETE).touch()  # as in every live export (agent_container.export_code)
    return dest


def socket_folder(scratch: Path) -> Path:
    """A fresh folder for the model's socket, in the scratch folder, which a restarted supervisor
    clears (however deep it is: the server binds through the folder's descriptor)."""
    folder = scratch / f"s-{secrets.token_hex(4)}"
    folder.mkdir(parents=True)
    return folder


def lay_out(code: Path, root: Path, goals: str, fixtures: dict[str, str]) -> tuple[Path, Path]:
    """(workspace, outbox) under `root`, owned by the container's user."""
    workspace, outbox = root / "ws", root / "outbox"
    shutil.copytree(
        code, workspace, symlinks=True, ignore=lambda folder, names: [COMPLETE] if folder == str(code) else []
    )
    for memory in MEMORY:
        _clear(workspace / memory)
        (workspace / memory).mkdir()
    write_inside(workspace, "agent/goals/active.md", goals)
    for relative, content in fixtures.items():
        write_inside(workspace, relative, content)
    outbox.mkdir()
    for folder in (workspace, outbox):
        give_to_agent(folder)
    return workspace, outbox


def _clear(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def write_inside(root: Path, relative: str, content: str) -> None:
    """Create parents and the file below root one component at a time, never through a link."""
    parts = PurePosixPath(relative).parts
    with Folder.open(root) as top:
        try:
            parent = top.descend(parts[:-1], create=0o755)
        except OSError as exc:
            part = PurePosixPath(exc.where).name if isinstance(exc, UnsafeFileError) else exc.filename
            raise WorkspaceError(f"fixture {relative}: {part} is not a real folder in the candidate's tree") from exc
    with parent:
        try:
            file_fd = parent.open_file(parts[-1], Access.REPLACE, create=0o644)
        except UnsafeFileError as exc:
            if exc.refusal is Refusal.NOT_REGULAR:
                raise WorkspaceError(f"fixture {relative} is not a regular file in the candidate's tree") from exc
            raise WorkspaceError(f"fixture {relative} cannot be written safely ({exc.reason})") from exc
        except OSError as exc:
            raise WorkspaceError(f"fixture {relative} cannot be written safely ({exc.strerror})") from exc
        with os.fdopen(file_fd, "wb") as handle:
            handle.write(content.encode())
