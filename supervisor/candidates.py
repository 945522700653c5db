"""Candidates: their records on disk, and turning an agent's workspace into a commit safely.

The workspace is hostile. It is never handed to git directly: a race-free walk (directory file
descriptors, `O_NOFOLLOW`, `lstat`) copies regular files and in-tree symlinks into a private
staging folder, refusing nested `.git`, symlinks that leave the tree, a tampered worktree `.git`
file and oversized trees. Git then hashes the staging folder with a private index file.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
from datetime import datetime, UTC
from pathlib import Path
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from supervisor.appendfile import write_atomic
from supervisor.errors import OuroborosError
from supervisor.gate import GateResult
from supervisor.gate_config import GateConfig
from supervisor.git_ops import Git
from supervisor.protocol import Proposal
from supervisor.states import FINAL, CandidateState, check_candidate

CANDIDATE_PREFIX = "refs/heads/ouroboros/candidate/"
REJECTED_PREFIX = "refs/ouroboros/rejected/"
SKIPPED_NAMES = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis"}

FINAL_STATES = FINAL


class CandidateError(OuroborosError, LookupError):
    """A candidate does not exist or is not in a state that allows the operation."""


class CandidateRecord(BaseModel):
    """Everything the supervisor knows about one candidate; saved as candidates/<id>.json."""

    # Values (ids, hashes, times) are unique per record: pydantic-core's JSON string cache would keep
    # up to 16,384 of them alive, RSS growing per verdict for hours (bench/soak.py). Keys only.
    model_config = ConfigDict(extra="forbid", cache_strings="keys")

    id: str
    gen: int
    n: int
    base: str = Field(description="main when the candidate was created.")
    worktree: str
    gitfile: str = Field(default="", description="The worktree's .git file as git wrote it.")
    state: CandidateState = CandidateState.PENDING
    created_at: datetime
    updated_at: datetime
    proposal: Proposal | None = None
    commit: str | None = Field(default=None, description="The commit being judged (after any rebase).")
    reasons: list[str] = Field(default_factory=list)
    refused: list[str] = Field(default_factory=list, description="Workspace entries refused as tricks.")
    gate: GateResult | None = None
    approved: bool = False
    generation: int | None = None
    infra_tries: int = Field(default=0, description="Gate runs the engine failed (not the candidate).")

    def change_state(self, new: CandidateState) -> None:
        """The one way a candidate's state changes: checked against `states.CANDIDATE_TRANSITIONS`."""
        self.state = check_candidate(self.state, new)

    @property
    def branch(self) -> str:
        return CANDIDATE_PREFIX + self.id

    @property
    def rejected_ref(self) -> str:
        return REJECTED_PREFIX + self.id


def now() -> datetime:
    return datetime.now(UTC)


class CandidateStore:
    """One JSON file per candidate, each written by temp file + rename so a crash never tears it.

    Live candidates are `candidates/<id>.json`; finished ones move to `candidates/done/`, so a start
    or a proposal only ever reads the few live records, never the whole history. `proposals/<id>`
    names the candidate a proposal id was recorded on: looking one up is one file, not a scan.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.done = folder / "done"
        self.proposals = folder.parent / "proposals"
        for path in (folder, self.done, self.proposals):
            path.mkdir(parents=True, exist_ok=True)
        self.corrupt: list[Path] = []

    def path(self, candidate_id: str) -> Path:
        if not candidate_id.replace("-", "").isdigit() or candidate_id.count("-") != 1:
            raise CandidateError(f"{candidate_id!r} is not a candidate id (like 3-1); see `supervisor candidates`")
        return self.folder / f"{candidate_id}.json"

    def _done_path(self, candidate_id: str) -> Path:
        return self.done / self.path(candidate_id).name

    def exists(self, candidate_id: str) -> bool:
        return self.path(candidate_id).exists() or self._done_path(candidate_id).exists()

    def load(self, candidate_id: str) -> CandidateRecord:
        for path in (self.path(candidate_id), self._done_path(candidate_id)):
            if path.exists():
                return self._read(path)
        raise CandidateError(f"no candidate {candidate_id}; list them with `supervisor candidates`")

    def _read(self, path: Path) -> CandidateRecord:
        try:
            return CandidateRecord.model_validate_json(path.read_bytes())
        except (ValidationError, OSError, ValueError) as exc:
            raise CandidateError(f"the candidate record {path} is unreadable or corrupt ({str(exc)[:200]}); "
                                 f"move it aside (e.g. to {path.name}.corrupt) and run the command again") from exc

    def save(self, record: CandidateRecord) -> CandidateRecord:
        record.updated_at = now()
        data = record.model_dump_json(indent=1).encode()
        if record.state in FINAL:
            write_atomic(self._done_path(record.id), data)
            self.path(record.id).unlink(missing_ok=True)
        else:
            write_atomic(self.path(record.id), data)
        return record

    def active(self) -> list[CandidateRecord]:
        """Unfinished candidates, oldest first; finished ones found here (a crash mid-save) are archived."""
        records = []
        for path in self.folder.glob("*.json"):
            record = self._try_read(path)
            if record is None:
                continue
            if record.state in FINAL:
                self.save(record)
            else:
                records.append(record)
        return sorted(records, key=lambda r: r.created_at)

    def newest(self, limit: int) -> tuple[list[CandidateRecord], int]:
        """The `limit` newest records by id (all when 0), oldest first, and how many there are in all.

        Ordered by the numbers in the file names, so only the records shown are read: a listing
        costs the same after ten candidates or a million.
        """
        self.corrupt = []
        names: dict[str, Path] = {}
        for folder in (self.done, self.folder):  # a live record wins over an archived one of the same id
            with os.scandir(folder) as entries:
                for entry in entries:
                    key = _id_of(entry.name)
                    if key is not None:
                        names[key] = Path(entry.path)
        ordered = sorted(names, key=_id_key)
        chosen = ordered[-limit:] if limit > 0 else ordered
        records = [record for record in (self._try_read(names[key]) for key in chosen) if record is not None]
        return records, len(ordered)

    def _try_read(self, path: Path) -> CandidateRecord | None:
        try:
            return self._read(path)
        except CandidateError:
            self.corrupt.append(path)
            return None

    def next_n(self, gen: int) -> int:
        """The first free candidate number of a generation in O(log n) looks (ids are used in order)."""
        high = 1
        while self.exists(f"{gen}-{high}"):
            high *= 2
        low = high // 2  # taken (or 0); high is free
        while high - low > 1:
            middle = (low + high) // 2
            if self.exists(f"{gen}-{middle}"):
                low = middle
            else:
                high = middle
        return high

    # -- the proposal index ---------------------------------------------------------------------

    def index_proposal(self, proposal_id: str, candidate_id: str) -> None:
        write_atomic(self._proposal_path(proposal_id), candidate_id.encode())

    def candidate_for(self, proposal_id: str) -> str | None:
        try:
            text = self._proposal_path(proposal_id).read_text().strip()
        except (FileNotFoundError, UnicodeDecodeError):
            return None
        return text or None

    def _proposal_path(self, proposal_id: str) -> Path:
        if not (len(proposal_id) == 32 and all(c in "0123456789abcdef" for c in proposal_id)):
            raise CandidateError(f"{proposal_id!r} is not a proposal id")
        folder = self.proposals / proposal_id[:2]
        folder.mkdir(exist_ok=True)
        return folder / proposal_id


# -- workspace → staging copy ------------------------------------------------------------------


class Snapshot(BaseModel):
    model_config = ConfigDict(extra="forbid")

    files: int = 0
    bytes: int = 0
    refused: list[str] = Field(default_factory=list)


class _Limits:
    def __init__(self, config: GateConfig) -> None:
        self.max_bytes = config.max_snapshot_mb * 1024 * 1024
        self.max_files = config.max_files


def snapshot_workspace(workspace: Path, staging: Path, config: GateConfig, gitfile: str) -> Snapshot:
    """Copy the workspace into `staging` without ever following a link; report what was refused."""
    result = Snapshot()
    root_fd = os.open(workspace, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        _check_gitfile(root_fd, gitfile, result)
        staging.mkdir(parents=True, exist_ok=True)
        _copy_folder(root_fd, staging, "", config, _Limits(config), result)
    finally:
        os.close(root_fd)
    return result


def _check_gitfile(root_fd: int, expected: str, result: Snapshot) -> None:
    try:
        info = os.stat(".git", dir_fd=root_fd, follow_symlinks=False)
    except FileNotFoundError:
        result.refused.append(".git: the worktree's .git file was removed")
        return
    if not stat.S_ISREG(info.st_mode):
        result.refused.append(".git: replaced by a folder or link (a planted repository, hooks or config)")
        return
    content = _read_at(root_fd, ".git", 4096)
    if content is None or content.decode(errors="replace") != expected:
        result.refused.append(".git: the worktree's .git file was rewritten to point elsewhere")


def _copy_folder(dir_fd: int, dest: Path, prefix: str, config: GateConfig, limits: _Limits,
                 result: Snapshot) -> None:
    for name in sorted(os.listdir(dir_fd)):
        relative = prefix + name
        if not _encodable(name):
            result.refused.append(f"{printable(relative)}: a file name that is not valid UTF-8")
            continue
        if relative == ".git" or name in SKIPPED_NAMES or name.endswith((".pyc", ".pyo")):
            continue
        if config.is_memory_path(relative) or config.is_memory_path(relative + "/"):
            continue
        if name == ".git":
            result.refused.append(f"{relative}: a nested git repository or git file")
            continue
        try:
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            result.refused.append(f"{relative}: vanished while being read")
            continue
        if stat.S_ISLNK(info.st_mode):
            _copy_link(dir_fd, name, relative, dest / name, result)
        elif stat.S_ISDIR(info.st_mode):
            _copy_subfolder(dir_fd, name, dest / name, relative + "/", config, limits, result)
        elif stat.S_ISREG(info.st_mode):
            _copy_file(dir_fd, name, relative, dest / name, limits, result)
        else:
            result.refused.append(f"{relative}: not a regular file, folder or symlink")
        if result.files > limits.max_files or result.bytes > limits.max_bytes:
            raise OverflowError


def _copy_subfolder(dir_fd: int, name: str, dest: Path, prefix: str, config: GateConfig, limits: _Limits,
                    result: Snapshot) -> None:
    try:
        child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError:
        result.refused.append(f"{prefix[:-1]}: changed while being read")
        return
    try:
        dest.mkdir()
        _copy_folder(child, dest, prefix, config, limits, result)
    finally:
        os.close(child)


def _encodable(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # os.listdir hands undecodable bytes back as lone surrogates
        return False
    return True


def printable(text: str) -> str:
    """Any name the agent chose, as text that every JSON writer and terminal can take (bytes escaped)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _copy_link(dir_fd: int, name: str, relative: str, dest: Path, result: Snapshot) -> None:
    try:
        target = os.readlink(name, dir_fd=dir_fd)
    except OSError:
        result.refused.append(f"{relative}: changed while being read")
        return
    if not _encodable(target):
        result.refused.append(f"{relative}: a symlink target that is not valid UTF-8")
        return
    landing = posixpath.normpath(posixpath.join(posixpath.dirname(relative), target))
    if posixpath.isabs(target) or landing == ".." or landing.startswith("../") or landing.split("/")[0] == ".git":
        result.refused.append(f"{relative}: symlink to {target!r} leaves the tree")
        return
    os.symlink(target, dest)
    result.files += 1


def _copy_file(dir_fd: int, name: str, relative: str, dest: Path, limits: _Limits, result: Snapshot) -> None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        result.refused.append(f"{relative}: changed while being read")
        return
    with os.fdopen(fd, "rb") as source:
        info = os.fstat(source.fileno())
        if not stat.S_ISREG(info.st_mode):
            result.refused.append(f"{relative}: not a regular file")
            return
        room = limits.max_bytes - result.bytes + 1
        data = source.read(room)
    executable = bool(info.st_mode & stat.S_IXUSR)
    with open(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                      0o755 if executable else 0o644), "wb") as target:
        target.write(data)
    result.files += 1
    result.bytes += len(data)


def _read_at(dir_fd: int, name: str, limit: int) -> bytes | None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        return handle.read(limit)


# -- staging → commit ----------------------------------------------------------------------------


def commit_snapshot(git: Git, base: str, staging: Path, scratch: Path, config: GateConfig, message: str) -> str:
    """Commit the staging folder on top of `base`; memory paths keep the base's content."""
    index = scratch / f"index-{staging.name}"
    index.unlink(missing_ok=True)
    excludes = [f":(top,exclude){folder}" for folder in config.memory_paths]
    try:
        git.run("read-tree", base, index_file=index)
        git.run("add", "-A", "--", ":(top)", *excludes, work_tree=staging, index_file=index)
        tree = git.out("write-tree", index_file=index)
    finally:
        index.unlink(missing_ok=True)
    return git.commit_tree(tree, [base], message)


def make_candidate_commit(git: Git, record: CandidateRecord, config: GateConfig, scratch: Path,
                          message: str) -> tuple[str, Snapshot]:
    """Snapshot the candidate's worktree and commit it; the staging folder is always removed."""
    staging = scratch / f"stage-{record.id}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        try:
            snapshot = snapshot_workspace(Path(record.worktree), staging, config, record.gitfile)
        except OverflowError:
            snapshot = Snapshot(refused=[f"workspace larger than {config.max_snapshot_mb} MB or "
                                         f"{config.max_files} files"])
        except FileNotFoundError:
            snapshot = Snapshot(refused=["the candidate worktree is gone"])
        if snapshot.refused and not staging.exists():
            return git.commit_tree(git.tree_of(record.base), [record.base], message), snapshot
        if snapshot.refused and snapshot.files == 0:
            return git.commit_tree(git.tree_of(record.base), [record.base], message), snapshot
        commit = commit_snapshot(git, record.base, staging, scratch, config, message)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return commit, snapshot


def _id_of(file_name: str) -> str | None:
    """`3-12.json` -> `3-12`; None for anything else (temporary files, strays)."""
    stem, dot, suffix = file_name.rpartition(".")
    if suffix != "json" or not dot:
        return None
    generation, dash, number = stem.partition("-")
    return stem if dash and generation.isdigit() and number.isdigit() else None


def _id_key(candidate_id: str) -> tuple[int, int]:
    generation, _, number = candidate_id.partition("-")
    return int(generation), int(number)
