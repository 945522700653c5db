"""Reading the bits of records the scorecard needs: lines from an offset, chain links, gate times, goals."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from supervisor.base.safe_fs import Bound, read_file
from supervisor.store.decision_log import record_hash

MAX_GOALS_BYTES = 1_000_000
MAX_BATCH_BYTES = 8_000_000  # one update reads at most this much of each file; the next one goes on
COMPLETED_MARK = "**Completed:**"  # how the agent's goals.py marks a finished goal


def read_lines(path: Path, offset: int) -> tuple[list[bytes], int]:
    """Complete lines from `offset` (a torn last line waits), and the offset after the last one."""
    if not path.exists():
        return [], offset
    with open(path, "rb") as handle:
        handle.seek(offset)
        # Never more than the file holds: a read of n bytes allocates n bytes first.
        data = handle.read(max(0, min(MAX_BATCH_BYTES, os.fstat(handle.fileno()).st_size - offset)))
    end = data.rfind(b"\n") + 1
    return [line for line in data[:end].split(b"\n")[:-1]], offset + end


def chain_problem(line: bytes, prev: str, seq: int) -> str:
    try:
        record = json.loads(line)
    except ValueError:
        return "not valid JSON"
    if not isinstance(record, dict) or "hash" not in record:
        return "not a decision record"
    if record.get("prev") != prev:
        return "its prev does not match the record before"
    if record_hash(record) != record["hash"]:
        return "its content does not match its hash (edited)"
    if record.get("seq") != seq:
        return f"seq is {record.get('seq')}, expected {seq}"
    return ""


def epoch(text: str) -> float:
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return time.time()


def gate_seconds(details: dict[str, Any]) -> float | None:
    passes = details.get("passes")
    if not isinstance(passes, list) or not passes:
        return None
    total = sum(float(p.get("duration_s") or 0) for p in passes if isinstance(p, dict))
    return round(total, 3)


def acceptance(details: dict[str, Any]) -> str | None:
    """The acceptance stage's result, where a pass of that name exists (issue 9's stage)."""
    for item in details.get("passes") or []:
        if isinstance(item, dict) and "accept" in str(item.get("name", "")):
            return "passed" if item.get("ok") else f"failed: {str(item.get('reason', ''))[:200]}"
    return None


def completed_stamps(path: Path) -> list[float | None]:
    """The `**Completed:** <UTC time>` of each goal in completed.md; never through a link, never a FIFO."""
    try:
        data = read_file(path, MAX_GOALS_BYTES, Bound.CUT).data
    except OSError:
        return []
    stamps: list[float | None] = []
    for line in data.decode("utf-8", "replace").splitlines():
        if line.startswith(COMPLETED_MARK):
            stamps.append(epoch_or_none(line[len(COMPLETED_MARK) :].strip()))
    return stamps


def epoch_or_none(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
