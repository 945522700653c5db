"""The daily markdown journal (`agent/journal/YYYY/MM/DD/{notes,reflections,user-feedback}.md`).

Each entry sits under `## <ISO-8601 UTC timestamp> <kind>`, appended and never rewritten; the day
folder is chosen when the entry is written. A JSON-lines twin (`entries.jsonl`) serves machines;
the markdown stays the source of truth because the supervisor writes entries there too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.errors import JournalError
from agent.usage import Usage

JournalFile = Literal["notes", "reflections", "user-feedback"]
FILES: tuple[JournalFile, ...] = ("notes", "reflections", "user-feedback")
_HEADING = re.compile(r"^## (\d{4}-\d{2}-\d{2}T\S+) +(\S.*?)\s*$")
_TOP_HEADING = re.compile(r"^(#{1,2}) ")


def utc_now() -> datetime:
    return datetime.now(UTC)


def timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def demote_headings(text: str) -> str:
    """Push `#`/`##` lines in free text down two levels so they cannot look like entry headings."""
    return "\n".join(_TOP_HEADING.sub(lambda m: "##" + m.group(1) + " ", line) for line in text.splitlines())


class JournalEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ts: str
    kind: str
    file: JournalFile
    body: str


class JournalRecord(BaseModel):
    """The structured twin of one entry, one JSON line in the day's entries.jsonl."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    ts: str
    kind: str
    file: JournalFile
    body: str
    usage: Usage | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class Journal:
    def __init__(self, root: Path, clock: Callable[[], datetime] = utc_now) -> None:
        self.root = root
        self._clock = clock

    def append(
        self, file: JournalFile, kind: str, body: str, usage: Usage | None = None, data: dict[str, Any] | None = None
    ) -> JournalEntry:
        moment = self._clock()
        day = self.root / moment.strftime("%Y/%m/%d")
        entry = JournalEntry(ts=timestamp(moment), kind=kind, file=file, body=demote_headings(body).strip())
        record = JournalRecord(ts=entry.ts, kind=kind, file=file, body=entry.body, usage=usage, data=data or {})
        try:
            day.mkdir(parents=True, exist_ok=True)
            with (day / f"{file}.md").open("a", encoding="utf-8") as f:
                f.write(f"## {entry.ts} {kind}\n\n{entry.body}\n\n")
            with (day / "entries.jsonl").open("a", encoding="utf-8") as f:
                f.write(record.model_dump_json() + "\n")
        except OSError as e:
            raise JournalError(
                f"cannot write the journal under {day}: {e.strerror or e}; check that it is writable"
            ) from e
        return entry

    def record_call(self, usage: Usage) -> None:
        """One line per LLM call in the day's usage.jsonl (the per-cycle sum goes into the entries)."""
        moment = self._clock()
        day = self.root / moment.strftime("%Y/%m/%d")
        try:
            day.mkdir(parents=True, exist_ok=True)
            with (day / "usage.jsonl").open("a", encoding="utf-8") as f:
                f.write(json.dumps({"ts": timestamp(moment), **usage.model_dump(exclude={"calls"})}) + "\n")
        except OSError as e:
            raise JournalError(
                f"cannot write {day / 'usage.jsonl'}: {e.strerror or e}; check that it is writable"
            ) from e

    def day_dirs(self) -> list[Path]:
        """Day folders, oldest first."""
        if not self.root.exists():
            return []
        if not self.root.is_dir():
            raise JournalError(f"{self.root} is not a folder; move it away so the journal can be created")
        return sorted(p for p in self.root.glob("[0-9][0-9][0-9][0-9]/[0-9][0-9]/[0-9][0-9]") if p.is_dir())

    def entries(self) -> list[JournalEntry]:
        """Every entry, oldest first (by timestamp, then file order)."""
        found: list[tuple[str, int, int, JournalEntry]] = []
        for day in self.day_dirs():
            for file_index, name in enumerate(FILES):
                for position, entry in enumerate(self._read_file(day / f"{name}.md", name)):
                    found.append((entry.ts, file_index, position, entry))
        return [item[-1] for item in sorted(found, key=lambda t: t[:3])]

    def _read_file(self, path: Path, file: JournalFile) -> Iterator[JournalEntry]:
        if not path.exists():
            return
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise JournalError(f"cannot read journal file {path}: {e}; fix its permissions or move it away") from e
        yield from parse_entries(text, file)

    def records_today(self) -> list[JournalRecord]:
        path = self.root / self._clock().strftime("%Y/%m/%d") / "entries.jsonl"
        if not path.exists():
            return []
        records = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(JournalRecord.model_validate_json(line))
            except ValueError:
                continue  # a torn last line after a crash: skip it
        return records


def parse_entries(text: str, file: JournalFile) -> Iterator[JournalEntry]:
    heading: tuple[str, str] | None = None
    lines: list[str] = []
    for line in text.splitlines():
        match = _HEADING.match(line)
        if match:
            if heading:
                yield JournalEntry(ts=heading[0], kind=heading[1], file=file, body="\n".join(lines).strip())
            heading, lines = (match.group(1), match.group(2)), []
        elif heading:
            lines.append(line)
    if heading:
        yield JournalEntry(ts=heading[0], kind=heading[1], file=file, body="\n".join(lines).strip())
