"""The only way the supervisor runs git: explicit git dir, no hooks, no outside config, CAS ref moves.

The agent controls every file of its worktree, including the worktree's `.git` file. So git is
never started inside an agent tree and never discovers a repository on its own: every call names
the trusted git dir (`--git-dir`), runs with that directory as cwd, ignores system and global
config and every `GIT_*` variable of our own environment, and disables hooks, fsmonitor and
transports. See docs/security.md for the full list of what this neutralises.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict, Unpack

from supervisor.base.blob_stream import BlobStream, BlobStreamError
from supervisor.base.errors import OuroborosError
from supervisor.base.safe_fs import Access, Folder, UnsafeFileError


class _RunOptions(TypedDict, total=False):
    """The keyword options of `Git.run`, which `Git.out` passes through."""

    input: bytes | None
    work_tree: Path | None
    index_file: Path | None
    check: bool
    timeout_s: float


ZERO = "0" * 40
EXPORT_S = 1800.0  # an export of even 100,000 files takes well under this; a hung git is killed
MAX_LINK_HOPS = 40  # as the kernel's limit on symlinks followed in one lookup
MAIN_REF = "refs/heads/main"
GEN_TAG_PREFIX = "refs/tags/gen/"

# Overrides applied to every call; they win over anything in the trusted repo config too.
SAFE_CONFIG = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.untrackedCache=false",
    "core.sshCommand=false",
    "core.askPass=",
    "credential.helper=",
    "protocol.allow=never",
    "submodule.recurse=false",
    "core.symlinks=true",
    "core.autocrlf=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "advice.detachedHead=false",
    "user.name=Ouroboros supervisor",
    "user.email=supervisor@ouroboros.invalid",
)

# Config keys that would make the git commands we use run a program (or pull in more config).
_DRIVER_KEYS = re.compile(
    r"^(filter\..*\.(clean|smudge|process)|merge\..*\.driver|diff\..*\.(textconv|command)|diff\.external"
    r"|include\.path|includeif\..*)$"
)


class GitError(OuroborosError, RuntimeError):
    """A git command failed; the message carries git's own words."""


class RefMovedError(GitError):
    """A compare-and-swap ref update lost: the ref no longer held the expected value."""


@dataclass(frozen=True)
class TreeEntry:
    mode: str
    kind: str  # blob, tree or commit (a gitlink)
    sha: str
    path: str


def safe_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A clean environment: nothing from ours that git would read, no system or global config."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C",
        "LC_ALL": "C",
        "HOME": "/nonexistent",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_OPTIONAL_LOCKS": "0",
        "GIT_ATTR_NOSYSTEM": "1",
    }
    env.update(extra or {})
    return env


class Git:
    """Runs git against one trusted git dir; optionally with a work tree and a private index."""

    def __init__(self, git_dir: Path) -> None:
        self.git_dir = Path(git_dir).resolve()

    def command(self, *args: str, work_tree: Path | None = None) -> list[str]:
        """The argv `run` would start, for a caller that pipes one git into another program."""
        command = ["git", f"--git-dir={self.git_dir}"]
        if work_tree is not None:
            command.append(f"--work-tree={work_tree}")
        for item in SAFE_CONFIG:
            command += ["-c", item]
        return command + list(args)

    def run(
        self,
        *args: str,
        input: bytes | None = None,
        work_tree: Path | None = None,
        index_file: Path | None = None,
        check: bool = True,
        timeout_s: float = 120,
    ) -> subprocess.CompletedProcess[bytes]:
        command = self.command(*args, work_tree=work_tree)
        extra = {"GIT_INDEX_FILE": str(index_file)} if index_file else {}
        try:
            done = subprocess.run(
                command,
                input=input,
                capture_output=True,
                cwd=self.git_dir,
                env=safe_env(extra),
                timeout=timeout_s,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise GitError(f"could not run `git {' '.join(args[:2])}`: {exc}") from exc
        if check and done.returncode != 0:
            message = done.stderr.decode(errors="replace").strip()
            raise GitError(f"`git {' '.join(args[:3])}` failed: {message}")
        return done

    def out(self, *args: str, **kwargs: Unpack[_RunOptions]) -> str:
        return self.run(*args, **kwargs).stdout.decode(errors="replace").strip()

    # -- reading ------------------------------------------------------------------------------

    def rev_parse(self, rev: str) -> str | None:
        """The commit `rev` names, or None."""
        done = self.run("rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}", check=False)
        return (done.stdout.decode().strip() or None) if done.returncode == 0 else None

    def ref_value(self, ref: str) -> str | None:
        done = self.run("rev-parse", "--verify", "--quiet", ref, check=False)
        return (done.stdout.decode().strip() or None) if done.returncode == 0 else None

    def refs(self, *prefixes: str) -> dict[str, str]:
        """Every ref under any of `prefixes` with the commit it points at."""
        text = self.out("for-each-ref", "--format=%(refname) %(objectname)", *prefixes)
        return dict(line.split(" ", 1) for line in text.splitlines() if line)

    def tree_of(self, rev: str) -> str:
        return self.out("rev-parse", "--verify", "--end-of-options", f"{rev}^{{tree}}")

    def parents(self, commit: str) -> list[str]:
        return self.out("rev-list", "--parents", "-n", "1", commit).split()[1:]

    def is_ancestor(self, older: str, newer: str) -> bool:
        return self.run("merge-base", "--is-ancestor", older, newer, check=False).returncode == 0

    def message(self, commit: str) -> str:
        return self.out("log", "-1", "--format=%B", commit)

    def ls_tree(self, rev: str) -> list[TreeEntry]:
        raw = self.run("ls-tree", "-r", "-z", "--full-tree", rev).stdout.decode("utf-8", "surrogateescape")
        entries = []
        for record in raw.split("\0"):
            if not record:
                continue
            meta, path = record.split("\t", 1)
            mode, kind, sha = meta.split()
            entries.append(TreeEntry(mode, kind, sha, path))
        return entries

    def read_blob(self, rev: str, path: str) -> bytes | None:
        """A file's bytes as stored in git (never read from a work tree), or None if absent."""
        done = self.run("cat-file", "blob", f"{rev}:{path}", check=False)
        return done.stdout if done.returncode == 0 else None

    def read_blobs(self, shas: list[str]) -> dict[str, bytes]:
        """Many blobs in one `git cat-file --batch` process."""
        if not shas:
            return {}
        unique = list(dict.fromkeys(shas))
        data = self.run("cat-file", "--batch", input="\n".join(unique).encode() + b"\n").stdout
        blobs, offset = {}, 0
        for sha in unique:
            header_end = data.index(b"\n", offset)
            _, kind, size = data[offset:header_end].decode().split()
            start = header_end + 1
            blobs[sha] = data[start : start + int(size)]
            offset = start + int(size) + 1
        return blobs

    def link_targets(self, rev: str, entries: list[TreeEntry] | None = None) -> dict[str, str]:
        """Every symlink of the tree of `rev`: path → target, as stored."""
        links = [e for e in (entries if entries is not None else self.ls_tree(rev)) if e.mode == "120000"]
        blobs = self.read_blobs([e.sha for e in links])
        return {e.path: blobs[e.sha].decode("utf-8", "surrogateescape") for e in links}

    def escaping_links(self, rev: str, entries: list[TreeEntry] | None = None) -> list[str]:
        """Symlinks of `rev` that, resolved component by component inside the tree, leave it."""
        return escaping_of(self.link_targets(rev, entries))

    def changed_paths(self, old: str, new: str) -> list[tuple[str, str]]:
        """(status letter, path) for every file that differs; renames show as delete + add."""
        raw = self.run(
            "diff-tree", "-r", "-z", "--no-renames", "--no-ext-diff", "--no-textconv", "--name-status", old, new
        ).stdout.decode("utf-8", "surrogateescape")
        fields = [field for field in raw.split("\0") if field]
        return [(fields[i][0], fields[i + 1]) for i in range(0, len(fields) - 1, 2)]

    def diff(self, old: str, new: str, stat_only: bool = False) -> str:
        mode = ["--stat"] if stat_only else ["-p"]
        return self.out("diff-tree", "-r", "--no-ext-diff", "--no-textconv", "--no-color", *mode, old, new)

    # -- writing ------------------------------------------------------------------------------

    def commit_tree(self, tree: str, parents: list[str], message: str) -> str:
        args = ["commit-tree", tree]
        for parent in parents:
            args += ["-p", parent]
        return self.out(*args, input=message.encode())

    def tree_from_entries(self, entries: list[TreeEntry], scratch: Path) -> str:
        """Write a tree holding exactly `entries`, through a private index file."""
        index = scratch / f"index-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        listing = "".join(f"{e.mode} {e.sha}\t{e.path}\0" for e in entries)
        try:
            self.run("read-tree", "--empty", index_file=index)
            self.run(
                "update-index", "-z", "--index-info", input=listing.encode("utf-8", "surrogateescape"), index_file=index
            )
            return self.out("write-tree", index_file=index)
        finally:
            index.unlink(missing_ok=True)

    def merge_trees(self, base: str, ours: str, theirs: str, scratch: Path) -> str | None:
        """`theirs`' change since `base` replayed on `ours`, or None on a conflict.

        An index-only three-way merge: no work tree, no merge drivers, and only trivial
        resolutions (a path changed on one side only); anything else counts as a conflict.
        """
        index = scratch / f"merge-index-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            self.run("read-tree", "-i", "-m", "--aggressive", base, ours, theirs, index_file=index)
            done = self.run("write-tree", index_file=index, check=False)
            return done.stdout.decode().strip() if done.returncode == 0 else None
        finally:
            index.unlink(missing_ok=True)

    def update_ref(self, ref: str, new: str, old: str, reason: str = "ouroboros") -> None:
        """Compare-and-swap: move `ref` to `new` only if it still holds `old` (ZERO = must not exist)."""
        done = self.run("update-ref", "-m", reason, ref, new, old, check=False)
        if done.returncode != 0:
            message = done.stderr.decode(errors="replace").strip()
            raise RefMovedError(f"{ref} did not hold {old[:12]} any more, so it was not moved ({message})")

    def delete_ref(self, ref: str, old: str) -> None:
        done = self.run("update-ref", "-d", ref, old, check=False)
        if done.returncode != 0:
            raise RefMovedError(f"{ref} was not deleted: {done.stderr.decode(errors='replace').strip()}")

    def dangerous_config(self) -> list[str]:
        """Trusted-config keys that could start programs (filters, drivers, pagers, includes)."""
        text = self.out("config", "--list", "--name-only")
        return [key for key in text.splitlines() if _DRIVER_KEYS.match(key.lower())]

    # -- exporting ----------------------------------------------------------------------------

    def export_tree(self, rev: str, dest: Path) -> int:
        """Write the tree of `rev` into the empty directory `dest` from git objects; returns file count.

        Symlinks are recreated as symlinks and never followed; gitlinks are skipped. Paths are
        checked so nothing lands outside `dest` even for a crafted tree, and a tree holding a
        symlink that resolves outside itself (alone or through a chain of links) is refused whole.
        """
        entries = [e for e in self.ls_tree(rev) if e.kind == "blob"]
        links = self.link_targets(rev, entries)
        escaping = escaping_of(links)
        if escaping:
            raise GitError(
                f"refusing to export {rev[:12]}: symlinks resolve outside the tree: {', '.join(escaping[:5])}"
            )
        files = [e.sha for e in entries if e.mode != "120000"]
        os.chmod(dest, 0o755)
        with _OpenParents(Folder.open(dest)) as parents, self._blob_stream(files) as stream:
            for entry in entries:
                *names, name = _inside(entry.path)
                folder = parents.enter(names)
                if entry.mode == "120000":
                    os.symlink(links[entry.path], name, dir_fd=folder.fd)
                    continue
                mode = 0o755 if entry.mode == "100755" else 0o644
                fd = folder.open_file(name, Access.WRITE, create=mode, exclusive=True)
                try:
                    stream.copy(entry.sha, fd)
                except BlobStreamError as exc:
                    raise GitError(f"could not export {rev[:12]}: {exc}") from exc
                finally:
                    os.close(fd)
        return len(entries)

    def _blob_stream(self, shas: list[str]) -> BlobStream:
        """The blobs `shas`, in that order, streamed out of one `git cat-file --batch` (bounded memory)."""
        try:
            return BlobStream(
                self.command("cat-file", "--batch"), cwd=self.git_dir, env=safe_env(), shas=shas, timeout_s=EXPORT_S
            )
        except OSError as exc:
            raise GitError(f"could not run `git cat-file --batch`: {exc}") from exc


def escaping_of(links: dict[str, str]) -> list[str]:
    """The links (path -> target) of a tree that, resolved inside it, leave it."""
    return [f"{path} -> {target!r}" for path, target in sorted(links.items()) if resolve_in_tree(path, links) is None]


def resolve_in_tree(path: str, links: dict[str, str]) -> list[str] | None:
    """Where `path` lands, following the tree's own `links` one component at a time, as the kernel does.

    Returns the landing path's components, or None if it climbs above the root, reaches an absolute
    target, lands in `.git`, or follows more than MAX_LINK_HOPS links. A chain like `b -> ..`,
    `u1 -> b/..`, `x -> u1/etc` is caught because each link is expanded where it is met, never
    judged by its own text alone.
    """
    landed: list[str] = []
    pending = list(reversed(path.split("/")))
    hops = 0
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if not landed:
                return None
            landed.pop()
            continue
        landed.append(part)
        target = links.get("/".join(landed))
        if target is None:
            continue
        hops += 1
        if hops > MAX_LINK_HOPS or target.startswith("/"):
            return None
        landed.pop()
        pending.extend(reversed(target.split("/")))
    return None if landed[:1] == [".git"] else landed


def _inside(relative: str) -> list[str]:
    """The components of a tree path; an empty, absolute, `.` or `..` one is refused (split, not
    parsed: this runs once per file of an export)."""
    parts = relative.split("/")
    if any(part in ("..", ".", "") for part in parts):
        raise GitError(f"refusing tree path {relative!r}: it would leave the export directory")
    return parts


class _OpenParents:
    """The chain of folders holding the file being exported, made as needed, only ever real folders.

    Tree entries come grouped by folder, so the chain is kept open from one file to the next: one
    open per folder, and never more descriptors than the tree is deep.
    """

    def __init__(self, root: Folder) -> None:
        self._chain: list[tuple[str, Folder]] = [("", root)]

    def enter(self, names: list[str]) -> Folder:
        keep = 0
        while keep < len(names) and keep + 1 < len(self._chain) and self._chain[keep + 1][0] == names[keep]:
            keep += 1
        while len(self._chain) > keep + 1:
            self._chain.pop()[1].close()
        for name in names[keep:]:
            try:
                child = self._chain[-1][1].folder(name, create=0o755)
            except UnsafeFileError as exc:
                raise GitError(f"refusing tree path through {exc.where}: it is not a directory") from exc
            self._chain.append((name, child))
        return self._chain[-1][1]

    def __enter__(self) -> _OpenParents:
        return self

    def __exit__(self, *exc: object) -> None:
        for _, folder in reversed(self._chain):
            folder.close()


def find_common_dir(start: Path) -> Path:
    """The trusted git common dir of the repository at or above `start`, found without running git.

    Refuses to resolve from inside a candidate worktree, whose `.git` file the agent controls.
    """
    start = Path(start).resolve()
    if "ouroboros" in start.parts and "worktrees" in start.parts:
        raise GitError(f"{start} is inside a candidate worktree; pass --repo with the agent repository")
    for directory in (start, *start.parents):
        dot_git = directory / ".git"
        if dot_git.is_dir():
            return _common_of(dot_git)
        if dot_git.is_file():
            pointed = dot_git.read_text().strip().removeprefix("gitdir:").strip()
            return _common_of((directory / pointed).resolve())
        if (directory / "HEAD").is_file() and (directory / "objects").is_dir() and (directory / "refs").is_dir():
            return _common_of(directory)
    raise GitError(f"no git repository at or above {start}; pass --repo PATH")


def _common_of(git_dir: Path) -> Path:
    commondir = git_dir / "commondir"
    if commondir.is_file():
        return (git_dir / commondir.read_text().strip()).resolve()
    return git_dir.resolve()
