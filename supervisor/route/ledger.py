"""The durable record of every metered LLM call: append-only JSON lines, fsynced per record.

Three kinds of line: a `reserve` (the worst case of a request, written before it is forwarded), a
`spend` (what the response really used, closing its reservation) and a `release` (a request that
ended without spending, e.g. an upstream error). A reservation still open when the ledger is opened
belongs to a supervisor that was killed mid-request: it is settled at its worst case (the response
may have been served), so a kill neither frees nor double-counts it.

JSON lines rather than sqlite: one writer (the supervisor), append-only like the decision log,
readable with `tail`/`jq`, and a crash can tear at most the last line, which a reload cuts off.
Opening costs time and memory bounded by recent activity, not by the ledger's age: totals are
snapshotted beside the file (see `checkpoint.py`) and only the lines after the snapshot are replayed.
The records, the totals and reading them back are `ledger_records.py`; this module is the writer.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from pathlib import Path
from typing import IO

from supervisor.route.checkpoint import load_totals, save_snapshot
from supervisor.route.ledger_records import (
    LedgerEntry,
    LedgerError,
    LedgerTotals,
    Record,
    Release,
    Reservation,
    Spend,
    iter_records,
    parse_record,
    read_entries,
    utc_now,
)

__all__ = [
    "LEDGER_FILE_NAME",
    "NO_CYCLE",
    "SNAPSHOT_EVERY",
    "Ledger",
    "LedgerEntry",
    "LedgerError",
    "LedgerTotals",
    "Record",
    "Release",
    "Reservation",
    "Spend",
    "iter_records",
    "parse_record",
    "read_entries",
    "utc_now",
]

log = logging.getLogger("ouroboros.route")

LEDGER_FILE_NAME = "llm-ledger.jsonl"
NO_CYCLE = "-"
SNAPSHOT_EVERY = 1000  # appends between snapshots


class Ledger:
    """The single writer of one ledger file; holds an exclusive lock on it while open.

    `lock` is re-entrant: the budget guard holds it across "check the caps, then reserve", so no
    settlement can change the totals between the check and the reservation.
    """

    def __init__(self, path: Path, handle: IO[bytes], totals: LedgerTotals) -> None:
        self.path = path
        self._handle = handle
        self.lock = threading.RLock()
        self.totals = totals
        self._since_snapshot = 0

    @classmethod
    def open(cls, path: Path) -> Ledger:
        """Open (creating if needed) for appending; settle what a killed supervisor left reserved."""

        path.parent.mkdir(parents=True, exist_ok=True)
        created = not path.exists()
        handle = open(path, "a+b")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.close()
            raise LedgerError(f"ledger {path} is held by another route; stop the other supervisor first") from exc
        if created:
            _fsync_dir(path.parent)
        try:
            totals, torn_at, replayed = load_totals(path)
            if torn_at is not None:
                _cut_torn_tail(path, handle, torn_at)
        except LedgerError:
            handle.close()
            raise
        ledger = cls(path, handle, totals)
        ledger._settle_leftovers()
        if replayed >= SNAPSHOT_EVERY:  # a long replay (no usable snapshot) is paid once, not per start
            ledger.snapshot()
        return ledger

    def append(self, record: Record, *, sync: bool = True) -> None:
        """Write one record before it counts: fsynced, or with `sync=False` only handed to the kernel.

        A record handed to the kernel survives a kill of the supervisor (the case reservations are
        for); only an OS crash can lose it, and the next fsynced record makes it durable too.
        """
        line = record.model_dump_json(exclude_none=True).encode("utf-8") + b"\n"
        with self.lock:
            try:
                self._handle.write(line)
                self._handle.flush()
                if sync:
                    os.fsync(self._handle.fileno())
            except (OSError, ValueError) as exc:  # ValueError: the ledger was closed under us
                raise LedgerError(
                    f"cannot write ledger {self.path}: {exc}; free disk space or fix permissions"
                ) from exc
            self.totals.apply(record)
            self._since_snapshot += 1
            if self._since_snapshot >= SNAPSHOT_EVERY:
                self.snapshot()

    def snapshot(self) -> None:
        """Save the totals and how far into the file they reach (failures only cost a slower open)."""

        with self.lock:
            try:
                save_snapshot(self.path, self._handle, self.totals)
                self._since_snapshot = 0
            except OSError as exc:
                log.warning("ledger %s: snapshot not written (%s); the next open replays more", self.path, exc)

    def _settle_leftovers(self) -> None:
        for held in list(self.totals.open.values()):
            log.warning("ledger %s: reservation %s was open at start; charged at its worst case", self.path, held.id)
            self.append(
                LedgerEntry(
                    ts=utc_now(),
                    run_id=held.run_id,
                    cycle=held.cycle,
                    model=held.model,
                    stream=held.stream,
                    status=0,
                    complete=False,
                    usage=held.usage,
                    cost_usd=held.cost_usd,
                    reservation=held.id,
                    charged_day=held.day,
                    note="settled at start at its worst case: the route stopped mid-request",
                )
            )

    def close(self) -> None:
        with self.lock:
            if not self._handle.closed:
                self.snapshot()
                self._handle.close()  # releases the flock


def _cut_torn_tail(path: Path, handle: IO[bytes], keep: int) -> None:
    """Drop the half-written last line a crash left: it was never fsynced, so never acknowledged."""
    size = os.fstat(handle.fileno()).st_size
    log.warning("ledger %s: dropping %d bytes of a write a crash interrupted", path, size - keep)
    handle.truncate(keep)
    os.fsync(handle.fileno())


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
