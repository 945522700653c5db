"""The supervisor's bare mirror of each project (HOME/projects/NAME/mirror.git): made, fetched, checked.

Crash-only: `create_mirror` builds the mirror in a scratch folder (`.adding+NAME+…`), renames it
into place and writes project.toml last, so a kill anywhere leaves nothing that `ProjectRegistry`
calls a project; the next `add` of that name clears what was left. A re-fetch is atomic
(`git fetch --atomic`): all refs move or none. A fetch that makes the mirror larger than
max_mirror_mb is refused and the mirror keeps its old refs. Only the supervisor writes here; git
runs hardened (supervisor/work/git_fetch.py, docs/projects.md).

The fetch owns refs/heads/* and refs/tags/* (forced, pruned, as the source has them); anything the
supervisor keeps in the mirror itself (task branches) must live under another prefix.
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from supervisor.base.git_ops import Git, GitError, TreeEntry, safe_env
from supervisor.base.remove_tree import remove_tree
from supervisor.store.projects import MIRROR, ProjectConfig, ProjectError, ProjectRegistry
from supervisor.work.git_fetch import (
    FETCH_TIMEOUT_S,
    MirrorSizeError,
    Source,
    classify_source,
    folder_mb,
    redact,
    remote_default_branch,
    run_fetch,
)

SCRATCH_PREFIX = ".adding+"  # '+' is not allowed in a project name, so NAME ends at the next '+'
LOCKS = ".locks"  # one lock file per name ever used; never deleted, so two commands never lock two files
SOURCE_REFS = ("refs/heads/", "refs/tags/")
MAX_ATTRIBUTES_BYTES = 1024 * 1024
Progress = Callable[[str], None]


class FetchReport(BaseModel):
    """What one fetch left in a project's mirror."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="The project.")
    source: str = Field(description="Where it was fetched from (a password in the URL shown as ***).")
    refs: int = Field(description="Branches and tags in the mirror after the fetch.")
    default_branch: str = Field(description="The branch new tasks start from.")
    head: str | None = Field(description="The commit the default branch points at; null if the source dropped it.")
    size_mb: float = Field(description="The mirror's size on disk after the fetch.")
    seconds: float = Field(description="Wall time of the fetch.")
    notes: list[str] = Field(description="What the operator should know (e.g. Git LFS files stay pointers).")


def _silent(_message: str) -> None:
    """No progress wanted."""


@contextmanager
def project_lock(registry: ProjectRegistry, name: str) -> Iterator[None]:
    """One command at a time adds, fetches or removes project `name` (the kernel drops it on a kill)."""
    registry.folder(name)  # validates the name before it becomes part of a path
    (registry.root / LOCKS).mkdir(parents=True, exist_ok=True)
    with open(registry.root / LOCKS / name, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise ProjectError(
                f"another supervisor command is adding, fetching or removing project {name!r} right now; "
                "wait for it to finish, then try again"
            ) from exc
        yield


def create_mirror(
    registry: ProjectRegistry,
    config: ProjectConfig,
    progress: Progress | None = None,
    *,
    timeout_s: float = FETCH_TIMEOUT_S,
) -> FetchReport:
    """Make project `config.name`: fetch its source into a new bare mirror, check it, then save the config.

    Refused, with nothing left behind, when the name is taken, the source does not answer, the
    default branch is missing, its head has submodules or too many files, or the mirror is too big.
    """
    say = progress or _silent
    source = classify_source(config.source)
    config = config.model_copy(update={"source": source.location})  # a local path, made absolute
    _check_branch_name(config.default_branch)
    with project_lock(registry, config.name):
        if registry.exists(config.name):
            raise ProjectError(
                f"project {config.name!r} already exists; `supervisor project fetch {config.name}` updates it, "
                f"`supervisor project remove {config.name}` removes it"
            )
        _clear_leftovers(registry, config.name, say)
        scratch = registry.root / f"{SCRATCH_PREFIX}{config.name}+{os.getpid()}+{uuid.uuid4().hex[:8]}"
        try:
            scratch.mkdir()
            mirror = scratch / MIRROR
            _init_bare(mirror, config.default_branch)
            started = time.monotonic()
            say(f"fetching {source.shown} into a new mirror ...")
            run_fetch(mirror, source, config.max_mirror_mb, timeout_s)
            head = Git(mirror).ref_value(f"refs/heads/{config.default_branch}")
            if head is None:
                raise ProjectError(_missing_branch(Git(mirror), source, config.default_branch))
            say(f"checking {config.default_branch} at {head[:12]} ...")
            notes = _inspect(Git(mirror), head, config)
            report = _report(mirror, config, source, started, notes)
            os.rename(scratch, registry.folder(config.name))
        except BaseException:
            remove_tree(scratch, say)
            raise
        registry.save(config)  # last: only now is it a project
    return report


def fetch(
    registry: ProjectRegistry, name: str, progress: Progress | None = None, *, timeout_s: float = FETCH_TIMEOUT_S
) -> FetchReport:
    """Fetch the project's branches and tags again (forced, pruned); too big: the old refs stay."""
    say = progress or _silent
    config = registry.get(name)
    source = classify_source(config.source)
    with project_lock(registry, name):
        mirror = registry.mirror(name)
        if not (mirror / "HEAD").is_file():
            say(f"the mirror of {name} is missing; making it again")
            remove_tree(mirror, say)
            _init_bare(mirror, config.default_branch)
        git = Git(mirror)
        before = git.refs(*SOURCE_REFS)
        packs = _packs(git)
        started = time.monotonic()
        say(f"fetching {source.shown} ...")
        try:
            run_fetch(mirror, source, config.max_mirror_mb, timeout_s)
        except MirrorSizeError:
            say("too large: putting the old refs back and dropping what was fetched ...")
            _restore(git, before, packs)
            raise
        except ProjectError:
            _drop_partial_packs(git)  # a fetch stopped midway moved no ref (--atomic)
            raise
        notes: list[str] = []
        head = git.ref_value(f"refs/heads/{config.default_branch}")
        if head is None:
            notes.append(_missing_branch(git, source, config.default_branch))
        else:
            notes += _lfs_notes(git, git.ls_tree(head))
        return _report(mirror, config, source, started, notes)


def resolve_commit(mirror: Path, rev: str) -> str:
    """The full commit id `rev` (a branch, a tag or a commit id) names in the project's mirror."""
    project = mirror.parent.name
    if not (mirror / "HEAD").is_file():
        raise ProjectError(f"project {project} has no mirror at {mirror}; run `supervisor project fetch {project}`")
    if not rev or rev.startswith("-") or len(rev) > 256 or any(ord(c) < 33 or ord(c) == 127 for c in rev):
        raise ProjectError(f"{rev!r} is not a branch, tag or commit id of project {project}")
    git = Git(mirror)
    for candidate in (f"refs/heads/{rev}", f"refs/tags/{rev}", rev):
        found = git.rev_parse(candidate)
        if found:
            return found
    raise ProjectError(
        f"base commit {rev} does not exist in project {project}; run `supervisor project fetch {project}` "
        "(or check the commit id)"
    )


def check_commit(mirror: Path, commit: str, config: ProjectConfig) -> None:
    """Refuse a tree the supervisor will not work on: submodules, or more than config.max_files files."""
    git = Git(mirror)
    try:
        entries = git.ls_tree(commit)
    except GitError as exc:
        raise ProjectError(f"commit {commit} cannot be read in project {config.name}: {exc}") from exc
    _check_entries(entries, commit, config)


def _inspect(git: Git, commit: str, config: ProjectConfig) -> list[str]:
    entries = git.ls_tree(commit)
    _check_entries(entries, commit, config)
    return _lfs_notes(git, entries)


def _check_entries(entries: list[TreeEntry], commit: str, config: ProjectConfig) -> None:
    gitlinks = [e.path for e in entries if e.kind == "commit"]
    modules = [e.path for e in entries if e.path.rsplit("/", 1)[-1] == ".gitmodules"]
    if gitlinks or modules:
        shown = ", ".join((gitlinks or modules)[:3])
        raise ProjectError(
            f"commit {commit[:12]} of project {config.name} has submodules ({shown}); submodules are not "
            "supported: vendor their code into the repository, or pick a commit without them"
        )
    if len(entries) > config.max_files:
        raise ProjectError(
            f"commit {commit[:12]} of project {config.name} has {len(entries)} files, more than "
            f"max_files = {config.max_files}; raise max_files in its project.toml if that is expected"
        )


def _lfs_notes(git: Git, entries: list[TreeEntry]) -> list[str]:
    """A note when the tree's .gitattributes route files through Git LFS (never run: they stay pointers)."""
    attributes = [e for e in entries if e.path.rsplit("/", 1)[-1] == ".gitattributes" and e.kind == "blob"]
    blobs = git.read_blobs([e.sha for e in attributes[:100]])
    if any(re.search(rb"\bfilter=lfs\b", blob[:MAX_ATTRIBUTES_BYTES]) for blob in blobs.values()):
        return [
            "the project uses Git LFS: LFS content is not fetched, those files stay pointer files "
            "in the mirror and in task work areas (tests that need them will fail)"
        ]
    return []


def _report(mirror: Path, config: ProjectConfig, source: Source, started: float, notes: list[str]) -> FetchReport:
    git = Git(mirror)
    return FetchReport(
        name=config.name,
        source=source.shown,
        refs=len(git.refs(*SOURCE_REFS)),
        default_branch=config.default_branch,
        head=git.ref_value(f"refs/heads/{config.default_branch}"),
        size_mb=round(folder_mb(mirror), 3),
        seconds=round(time.monotonic() - started, 3),
        notes=notes,
    )


def _missing_branch(git: Git, source: Source, branch: str) -> str:
    branches = sorted(ref.removeprefix("refs/heads/") for ref in git.refs("refs/heads/"))
    known = ", ".join(branches[:10]) + (" …" if len(branches) > 10 else "") if branches else "none"
    return f"{source.shown} has no branch {branch!r} (its branches: {known}); pass --branch with one of them"


def _check_branch_name(branch: str) -> None:
    done = subprocess.run(
        ["git", "check-ref-format", f"refs/heads/{branch}"], env=safe_env(), capture_output=True, check=False
    )
    if done.returncode != 0 or branch.startswith("-"):
        raise ProjectError(f"{branch!r} is not a valid branch name; pass --branch with the project's branch")


def _init_bare(mirror: Path, branch: str) -> None:
    """An empty bare repository with no template (no sample hooks), HEAD naming the default branch."""
    mirror.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["git", "init", "--bare", "--quiet", "--template=", str(mirror)],
        env=safe_env(),
        cwd=mirror.parent,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise ProjectError(f"could not make a mirror at {mirror}: {done.stderr.decode(errors='replace').strip()}")
    Git(mirror).run("symbolic-ref", "HEAD", f"refs/heads/{branch}")


def _restore(git: Git, before: dict[str, str], packs: set[str]) -> None:
    """Put the source refs back as they were before a refused fetch and drop the packs it brought.

    Only those packs go (every fetched object lands in one: `transfer.unpackLimit=1`), never a
    prune: objects nothing references yet (a snapshot or judged tree the supervisor is writing) and
    commits a force-push left behind (the base of a queued task) stay.
    """
    now = git.refs(*SOURCE_REFS)
    lines = [f"delete {ref} {sha}" for ref, sha in now.items() if ref not in before]
    lines += [f"update {ref} {sha}" for ref, sha in before.items() if now.get(ref) != sha]
    if lines:
        git.run("update-ref", "--stdin", input=("\n".join(lines) + "\n").encode())
    _drop_partial_packs(git)
    folder = git.git_dir / "objects" / "pack"
    for name in _packs(git) - packs:
        for leftover in folder.glob(f"{name}.*"):
            leftover.unlink(missing_ok=True)


def _packs(git: Git) -> set[str]:
    """The names (without suffix) of the mirror's packs."""
    return {path.stem for path in (git.git_dir / "objects" / "pack").glob("pack-*.pack")}


def _drop_partial_packs(git: Git) -> None:
    for leftover in (git.git_dir / "objects" / "pack").glob("tmp_*"):
        leftover.unlink(missing_ok=True)


def _clear_leftovers(registry: ProjectRegistry, name: str, say: Progress) -> None:
    """What a killed `add` of `name` left: scratch folders, or a folder renamed in before project.toml."""
    for leftover in registry.root.glob(f"{SCRATCH_PREFIX}{name}+*"):
        say(f"removing {leftover.name}, left by an interrupted `project add {name}`")
        remove_tree(leftover, say)
    folder = registry.folder(name)
    if folder.exists() or folder.is_symlink():
        say(f"removing {folder}, left by an interrupted `project add {name}` (it has no project.toml)")
        if folder.is_symlink() or not folder.is_dir():
            folder.unlink()
        else:
            remove_tree(folder, say)


def default_branch_of(source_text: str, scratch: Path, timeout_s: float = 120) -> str | None:
    """The branch the source's HEAD points at (for `project add` without --branch), or None."""
    source = classify_source(source_text)
    _init_bare(scratch, "main")
    return remote_default_branch(scratch, source, timeout_s)


__all__ = [
    "FetchReport",
    "MirrorSizeError",
    "check_commit",
    "create_mirror",
    "default_branch_of",
    "fetch",
    "project_lock",
    "redact",
    "resolve_commit",
]
