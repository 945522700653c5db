"""Reading the agent's journal on the host without trusting it: no links followed, no FIFO opened, bounded."""

from __future__ import annotations

from pathlib import Path

from supervisor.base.safe_fs import Bound, Folder, Refusal, UnsafeFileError

JOURNAL_FILES = ("notes.md", "reflections.md", "user-feedback.md")


def _newest(folder: Folder, width: int) -> str | None:
    try:  # streamed: a folder of a million names costs no memory
        return max((name for name in folder.names() if len(name) == width and name.isdigit()), default=None)
    except OSError:
        return None


def latest_day(journal: Path) -> tuple[str, dict[str, str]] | None:
    """The newest YYYY/MM/DD folder and the tail of each journal file in it."""
    try:
        folder = Folder.open(journal)
    except OSError:
        return None
    parts: list[str] = []
    try:
        for width in (4, 2, 2):
            name = _newest(folder, width)
            if name is None:
                return None
            parts.append(name)
            try:
                with folder:
                    folder = folder.folder(name)
            except OSError:
                return None
        return "-".join(parts), {name: tail(folder, name, 16_000) for name in JOURNAL_FILES}
    finally:
        folder.close()


def tail(folder: Folder, name: str, limit: int) -> str:
    """The last `limit` bytes of a regular file (never a link, FIFO or device), decoded leniently."""
    try:
        data = folder.read(name, limit, Bound.TAIL).data
    except UnsafeFileError as exc:
        return "(not a regular file: not shown)" if exc.refusal is Refusal.NOT_REGULAR else ""
    except OSError:
        return ""
    return data.decode("utf-8", "replace")
