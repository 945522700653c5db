"""Where finished candidate records go after the newest few thousand, and the proposal-id index.

Both grow with every proposal for as long as the supervisor runs, so both live in a bounded
number of files, written only by whole-line appends (supervisor/base/appendfile.py):

- `candidates/archive/<gen>-<block>.jsonl`: finished records moved out of `candidates/done/`, one
  JSON line each, `block = n // BLOCK`, so reading one old id reads one file of at most BLOCK lines.
- `candidates/archive/high-water.json`: per generation, the highest candidate number archived. It is
  written before any record moves, so an id whose file is gone is still known as used and
  `next_n` never hands it out again; if it is lost it is rebuilt from the blocks.
- `proposals/<xx>.idx`: `<proposal id> <candidate id | dropped>` lines, the last line of an id wins;
  256 files, one per first two hex digits. A decided proposal id stays decided for good, so the
  index never forgets; it costs about 45 bytes a proposal, and a look-up reads 1/256 of it.

Each append holds an `flock` on its file, cuts a torn tail (a kill mid-write) off first, and
writes complete lines in one `write` + `fsync`; a reader ignores a last line with no newline.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

from supervisor.base.appendfile import append_all, repair_tail, write_atomic
from supervisor.base.errors import OuroborosError
from supervisor.base.generation_number import GenerationNumberError, candidate_id_or_none, parse_candidate_id
from supervisor.base.safe_fs import Access, open_regular

BLOCK = 1000
HIGH_WATER = "high-water.json"
DROPPED = "dropped"
_BLOCK_NAME = re.compile(r"^([0-9]+-[0-9]+)\.jsonl$")  # ASCII: `\d` takes any script's digits
_PROPOSAL_ID = re.compile(r"^[0-9a-f]{32}$")
_INDEX_VALUE = re.compile(r"^([0-9]+-[0-9]+|dropped)$")


class ArchiveError(OuroborosError, ValueError):
    """An archive or index entry cannot be written as asked (a bad id or value)."""


def split_id(candidate_id: str) -> tuple[int, int]:
    """`3-12` -> (3, 12); ArchiveError for anything not written as a candidate id."""
    try:
        return parse_candidate_id(candidate_id)
    except GenerationNumberError as exc:
        raise ArchiveError(str(exc)) from exc


def locked_append(path: Path, data: bytes) -> str | None:
    """Append complete lines under an exclusive lock, a torn tail cut off first; returns its warning."""
    fd = open_regular(path, Access.APPEND, create=0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        warning = repair_tail(path)
        append_all(fd, data, name=path)
    finally:
        os.close(fd)  # drops the lock
    return warning


def _make(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except PermissionError:
        pass  # a reader that may only read the state (the console); it never writes here


def complete_lines(path: Path) -> bytes:
    """The file's bytes up to its last newline ('' if missing): a torn tail is never read as a record."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return b""
    return data[: data.rfind(b"\n") + 1]


class Archive:
    """Finished records in block files; see the module docstring."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        _make(folder)
        self.warnings: list[str] = []

    def block_path(self, candidate_id: str) -> Path:
        generation, number = split_id(candidate_id)
        return self.folder / f"{generation}-{number // BLOCK}.jsonl"

    def find(self, candidate_id: str) -> list[bytes]:
        """Every archived line of this id, newest last (normally one)."""
        prefix = b'{"id":"' + candidate_id.encode() + b'",'
        return [line for line in complete_lines(self.block_path(candidate_id)).splitlines() if line.startswith(prefix)]

    def ids_in(self, block: Path) -> set[str]:
        found = set()
        for line in complete_lines(block).splitlines():
            match = re.match(rb'^\{"id":"(\d+-\d+)",', line)
            if match:
                found.add(match.group(1).decode())
        return found

    def append(self, lines: dict[str, bytes]) -> None:
        """Archive `candidate id -> one-line JSON`; ids already archived are skipped (a re-run after a kill)."""
        by_block: dict[Path, list[str]] = {}
        for candidate_id in lines:
            by_block.setdefault(self.block_path(candidate_id), []).append(candidate_id)
        for block, ids in sorted(by_block.items()):
            present = self.ids_in(block)
            data = b"".join(lines[i] + b"\n" for i in ids if i not in present)
            if data:
                warning = locked_append(block, data)
                if warning:
                    self.warnings.append(warning)

    def lines(self) -> Iterator[bytes]:
        """Every archived line, block by block (for a full listing only: it reads the whole archive)."""
        for block in sorted(self._blocks(), key=lambda b: b[0:2]):
            yield from complete_lines(block[2]).splitlines()

    def _blocks(self) -> list[tuple[int, int, Path]]:
        found = []
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return []
        for name in names:
            match = _BLOCK_NAME.fullmatch(name)
            numbers = candidate_id_or_none(match.group(1)) if match else None  # a block is named as an id is
            if numbers is not None:
                found.append((numbers[0], numbers[1], self.folder / name))
        return found

    # -- the high-water mark ------------------------------------------------------------------

    def high_water(self) -> dict[int, int]:
        """Per generation, the highest archived candidate number; rebuilt from the blocks if lost."""
        path = self.folder / HIGH_WATER
        try:
            data = json.loads(path.read_bytes())
            return {int(gen): int(n) for gen, n in data.items()}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError, TypeError):
            self.warnings.append(f"{path} was unreadable; it was rebuilt from the archive")
        rebuilt = self._rebuild_high_water()
        if rebuilt or path.exists():
            self._write_high_water(rebuilt)
        return rebuilt

    def raise_high_water(self, numbers: dict[int, int]) -> dict[int, int]:
        """Raise the marks to at least `numbers` (never lower one); written whole before records move."""
        current = self.high_water()
        merged = dict(current)
        for gen, n in numbers.items():
            merged[gen] = max(n, merged.get(gen, 0))
        if merged != current:
            self._write_high_water(merged)
        return merged

    def _write_high_water(self, marks: dict[int, int]) -> None:
        data = json.dumps({str(gen): n for gen, n in sorted(marks.items())})
        write_atomic(self.folder / HIGH_WATER, data.encode())

    def _rebuild_high_water(self) -> dict[int, int]:
        newest: dict[int, tuple[int, Path]] = {}
        for gen, block, path in self._blocks():
            if gen not in newest or block > newest[gen][0]:
                newest[gen] = (block, path)
        marks = {}
        for gen, (_, path) in newest.items():
            numbers = [parsed[1] for parsed in map(candidate_id_or_none, self.ids_in(path)) if parsed is not None]
            if numbers:
                marks[gen] = max(numbers)
        return marks


class ProposalIndex:
    """proposal id -> candidate id (or `dropped`) in 256 append-only buckets; see the module docstring."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        _make(folder)
        self.warnings: list[str] = []

    def put(self, proposal_id: str, value: str) -> None:
        self._check(proposal_id)
        if not _INDEX_VALUE.fullmatch(value):
            raise ArchiveError(f"{value!r} is neither a candidate id nor {DROPPED!r}")
        warning = locked_append(self._bucket(proposal_id), f"{proposal_id} {value}".encode() + b"\n")
        if warning:
            self.warnings.append(warning)

    def put_many(self, proposal_ids: list[str], value: str) -> None:
        """`put` for many ids at once: one locked append (one fsync) per bucket, not one per id.

        An agent decides how many proposal files a verdict drops (its outbox has no count limit), so
        a per-id fsync let it hold the supervisor for minutes; each bucket's lines land whole or not
        at all, and a kill between buckets leaves the rest unindexed, as a kill between ids did.
        """
        for proposal_id in proposal_ids:
            self._check(proposal_id)
        if not _INDEX_VALUE.fullmatch(value):
            raise ArchiveError(f"{value!r} is neither a candidate id nor {DROPPED!r}")
        by_bucket: dict[Path, list[bytes]] = {}
        for proposal_id in proposal_ids:
            by_bucket.setdefault(self._bucket(proposal_id), []).append(f"{proposal_id} {value}\n".encode())
        for bucket, lines in sorted(by_bucket.items()):
            warning = locked_append(bucket, b"".join(lines))
            if warning:
                self.warnings.append(warning)

    def get(self, proposal_id: str) -> str | None:
        self._check(proposal_id)
        data = b"\n" + complete_lines(self._bucket(proposal_id))
        at = data.rfind(b"\n" + proposal_id.encode() + b" ")
        if at >= 0:
            end = data.find(b"\n", at + 1)
            value = data[at + 34 : end].decode(errors="replace").strip()
            return value or None
        return self._legacy(proposal_id)

    def migrate_legacy(self) -> int:
        """Move the one-file-per-id entries older versions wrote into the buckets; returns how many moved.

        A legacy folder `<xx>/` maps to bucket `<xx>.idx`: its entries go in one append (one fsync),
        then the files go. A kill in between leaves entries both ways, which read the same.
        """
        moved = 0
        for folder in sorted(self.folder.iterdir()):
            if not (len(folder.name) == 2 and folder.is_dir() and not folder.is_symlink()):
                continue
            entries = sorted(folder.iterdir())
            known = b"\n" + complete_lines(self.folder / f"{folder.name}.idx")
            lines = []
            for entry in entries:
                value = self._legacy(entry.name) if _PROPOSAL_ID.fullmatch(entry.name) else None
                if (
                    value is not None
                    and _INDEX_VALUE.fullmatch(value)
                    and b"\n" + entry.name.encode() + b" " not in known
                ):
                    lines.append(f"{entry.name} {value}\n".encode())
            if lines:
                warning = locked_append(self.folder / f"{folder.name}.idx", b"".join(lines))
                if warning:
                    self.warnings.append(warning)
            for entry in entries:
                try:
                    entry.unlink(missing_ok=True)
                except OSError:
                    continue  # not a file we wrote; left alone
                moved += 1
            try:
                folder.rmdir()
            except OSError:
                pass
        return moved

    def _legacy(self, proposal_id: str) -> str | None:
        try:
            text = (self.folder / proposal_id[:2] / proposal_id).read_text().strip()
        except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
            return None
        return text or None

    def _bucket(self, proposal_id: str) -> Path:
        return self.folder / f"{proposal_id[:2]}.idx"

    @staticmethod
    def _check(proposal_id: str) -> None:
        if not _PROPOSAL_ID.fullmatch(proposal_id):
            raise ArchiveError(f"{proposal_id!r} is not a proposal id")
