"""The durable record of every metered LLM call: append-only JSON lines, fsynced per entry.

JSON lines rather than sqlite: one writer (the supervisor), one kind of record, append-only like
the decision log, readable with `tail`/`jq`, and a crash can tear at most the last line, which a
reload recognises and skips. Totals are rebuilt in memory on open, so a restart keeps the spend.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from supervisor.errors import OuroborosError
from supervisor.route.pricing import Usage

log = logging.getLogger("ouroboros.route")

LEDGER_FILE_NAME = "llm-ledger.jsonl"
NO_CYCLE = "-"


class LedgerError(OuroborosError, OSError):
    """The ledger cannot be read or written; spend cannot be trusted until it is fixed."""


class LedgerEntry(BaseModel):
    """One metered response (or the part of a stream that arrived)."""

    model_config = ConfigDict(extra="forbid")

    v: Literal[1] = 1
    ts: datetime = Field(description="When the response finished, UTC.")
    run_id: str = Field(description="The agent run whose credential made the call.")
    cycle: str = Field(description="The agent's cycle id from x-ouroboros-cycle, or '-'.")
    model: str
    stream: bool
    status: int = Field(description="HTTP status the upstream answered with.")
    message_id: str | None = None
    complete: bool = Field(description="False when a stream ended before message_stop.")
    usage: Usage
    cost_usd: Decimal

    @property
    def day(self) -> str:
        return self.ts.astimezone(timezone.utc).date().isoformat()


class Spend(BaseModel):
    """Tokens and dollars spent in one scope."""

    model_config = ConfigDict(extra="forbid")

    tokens: int = 0
    usd: Decimal = Decimal(0)
    requests: int = 0

    def add(self, entry: LedgerEntry) -> None:
        self.tokens += entry.usage.total_tokens
        self.usd += entry.cost_usd
        self.requests += 1


class LedgerTotals:
    """Spend by scope, rebuilt from the file on open and kept current on append."""

    def __init__(self) -> None:
        self.total = Spend()
        self.by_day: dict[str, Spend] = {}
        self.by_cycle: dict[str, Spend] = {}

    def add(self, entry: LedgerEntry) -> None:
        self.total.add(entry)
        self.by_day.setdefault(entry.day, Spend()).add(entry)
        self.by_cycle.setdefault(entry.cycle, Spend()).add(entry)

    def day(self, day: str) -> Spend:
        return self.by_day.get(day, Spend())

    def cycle(self, cycle: str) -> Spend:
        return self.by_cycle.get(cycle, Spend())


class Ledger:
    """The single writer of one ledger file; holds an exclusive lock on it while open."""

    def __init__(self, path: Path, handle, totals: LedgerTotals) -> None:
        self.path = path
        self._handle = handle
        self._lock = threading.Lock()
        self.totals = totals

    @classmethod
    def open(cls, path: Path) -> Ledger:
        """Open (creating if needed) for appending, after replaying what is already there."""
        path.parent.mkdir(parents=True, exist_ok=True)
        created = not path.exists()
        handle = open(path, "a+b")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.close()
            raise LedgerError(
                f"ledger {path} is held by another route; stop the other supervisor first"
            ) from exc
        if created:
            _fsync_dir(path.parent)
        totals, torn = replay(path)
        if torn:
            _cut_torn_tail(path, handle)
        return cls(path, handle, totals)

    def append(self, entry: LedgerEntry) -> None:
        """Write one entry durably (fsync) before its spend counts as recorded."""
        line = entry.model_dump_json().encode("utf-8") + b"\n"
        with self._lock:
            try:
                self._handle.write(line)
                self._handle.flush()
                os.fsync(self._handle.fileno())
            except (OSError, ValueError) as exc:  # ValueError: the ledger was closed under us
                raise LedgerError(
                    f"cannot write ledger {self.path}: {exc}; free disk space or fix permissions"
                ) from exc
            self.totals.add(entry)

    def close(self) -> None:
        with self._lock:
            if not self._handle.closed:
                self._handle.close()  # releases the flock


def replay(path: Path) -> tuple[LedgerTotals, bool]:
    """Totals from a ledger file, and whether its last line was torn by a crash (then skipped)."""
    totals = LedgerTotals()
    entries, torn = read_entries(path)
    for entry in entries:
        totals.add(entry)
    return totals, torn


def read_entries(path: Path) -> tuple[list[LedgerEntry], bool]:
    """Every entry in order, and whether a torn last line was skipped; corruption elsewhere raises."""
    if not path.exists():
        return [], False
    lines = path.read_bytes().split(b"\n")
    entries: list[LedgerEntry] = []
    torn = False
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            entries.append(LedgerEntry.model_validate_json(raw))
        except (ValidationError, ValueError) as exc:
            if number == len(lines):  # no newline after it: the write a crash interrupted
                torn = True
                continue
            raise LedgerError(
                f"ledger {path} line {number} is corrupt ({_short(exc)}); "
                "restore it from a backup or move it aside to start counting from zero"
            ) from exc
    return entries, torn


def _cut_torn_tail(path: Path, handle) -> None:
    """Drop the half-written last line a crash left: it was never fsynced, so never acknowledged."""
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    log.warning("ledger %s: dropping %d bytes of a write a crash interrupted", path, len(data) - keep)
    handle.truncate(keep)
    os.fsync(handle.fileno())


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]

