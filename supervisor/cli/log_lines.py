"""Where the supervisor's log lines go while a command runs it: to the command's own printer.

The supervisor's modules log through `logging.getLogger(__name__)` (all under the logger
`supervisor`) and decide nothing about output; `supervisor start` and `supervisor demo` hand each
line, exactly as written, to the function that prints their progress (stderr with a time stamp, or a
JSON Lines event with --json), so what an operator sees is what the command chose.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

ROOT = "supervisor"


class LineHandler(logging.Handler):
    """Hands each record's message (no level, no logger name) to `say`."""

    def __init__(self, say: Callable[[str], None]) -> None:
        super().__init__(logging.INFO)
        self._say = say

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._say(record.getMessage())
        except Exception:  # noqa: BLE001 - a printer that fails must not stop the supervisor
            self.handleError(record)


@contextmanager
def lines_to(say: Callable[[str], None]) -> Iterator[None]:
    """While the block runs, every INFO-or-worse line of the supervisor goes to `say`, and only there."""
    logger = logging.getLogger(ROOT)
    handler = LineHandler(say)
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
