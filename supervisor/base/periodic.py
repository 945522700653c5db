"""Work done at most every so often, across restarts: a file holding when it was last done.

Crash-only: the time is written after the work; a kill before that only repeats the work. A file
that cannot be read, or a time in the future (the clock was set back), counts as due.
"""

from __future__ import annotations

import time
from pathlib import Path


def due(stamp: Path, every_s: float) -> bool:
    """True if the work stamped in `stamp` was last done `every_s` seconds ago or more (or never)."""
    try:
        last = float(stamp.read_text())
    except (OSError, ValueError):
        return True
    return not 0 <= time.time() - last < every_s


def done(stamp: Path) -> None:
    """Record that the work was done now. A stamp that cannot be written (a full disk) only means
    the work is done again next time: never a reason to stop."""
    try:
        stamp.write_text(f"{time.time()}\n")
    except OSError:
        pass
