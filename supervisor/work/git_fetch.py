"""The one place the supervisor talks to a project's source: hardened `git fetch` and `ls-remote`.

A project's source is third-party: its server, its repository config, its hooks and attributes
are as hostile as the agent. Every call here runs through supervisor/base/git_ops.py's hardened
environment (no system or global config, no hooks, no askpass, no terminal prompt) and adds:
only the source's own transport allowed (`GIT_ALLOW_PROTOCOL`, one of file, git, http, https,
ssh), no submodule recursion, every received object checked (`transfer.fsckObjects`), a stalled
transfer aborted (`http.lowSpeed*`, ssh `ConnectTimeout`), a wall-clock deadline and a size cap
enforced from outside by killing git's whole process group. The source's own config can name no
`uploadpack`/`receivepack` program: the URL is given on the command line, never as a configured
remote. See docs/projects.md.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from supervisor.base.git_ops import SAFE_CONFIG, safe_env
from supervisor.store.projects import ProjectError

SCHEMES = ("file", "git", "http", "https", "ssh")
FETCH_TIMEOUT_S = 900.0
POLL_S = 0.25
PR_SET_PDEATHSIG = 1
SOURCE_REFSPECS = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")
FETCH_CONFIG = (
    "fetch.recurseSubmodules=false",
    "submodule.recurse=false",
    "transfer.fsckObjects=true",
    "fetch.fsckObjects=true",
    "fetch.writeCommitGraph=false",
    "transfer.unpackLimit=1",  # every fetch is kept as one pack: a refused one is dropped whole (mirror._restore)
    "fetch.showForcedUpdates=false",
    "http.lowSpeedLimit=1000",
    "http.lowSpeedTime=60",
    "http.followRedirects=initial",
)
PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_HELPER = re.compile(r"^([A-Za-z0-9][A-Za-z0-9+.-]*)::")  # git's `<transport>::<address>`
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@")


class MirrorSizeError(ProjectError):
    """A fetch would make a project's mirror larger than its max_mirror_mb."""


@dataclass(frozen=True)
class Source:
    """Where a project is fetched from: its transport, and the exact text given to git."""

    scheme: str
    location: str  # a URL, an scp-like ssh address, or an absolute local path

    @property
    def shown(self) -> str:
        return redact(self.location)


def redact(source: str) -> str:
    """The source without a password or token in its URL (for messages and listings)."""
    return _USERINFO.sub(r"\1***@", source)


def classify_source(source: str) -> Source:
    """The transport git would use for `source`, refused if not one of SCHEMES (git's own rules)."""
    if not source or source.startswith("-") or any(ord(c) < 32 or ord(c) == 127 for c in source):
        raise ProjectError(f"{source!r} is not a source; give a git URL (https://…, ssh://…) or a local path")
    helper = _HELPER.match(source)
    if helper:
        raise ProjectError(
            f"source {redact(source)} names the git remote helper {helper.group(1)}::, which can run programs; "
            f"use one of {', '.join(s + '://' for s in SCHEMES)} or a local path"
        )
    match = _URL.match(source)
    if match:
        scheme = match.group(1).lower()
        if scheme not in SCHEMES:
            raise ProjectError(
                f"source {redact(source)} uses {scheme}://, which the supervisor does not fetch from; "
                f"use one of {', '.join(s + '://' for s in SCHEMES)} or a local path"
            )
        return Source(scheme, source)
    colon, slash = source.find(":"), source.find("/")
    if colon > 0 and (slash < 0 or colon < slash):
        return Source("ssh", source)  # scp-like user@host:path, as git reads it
    path = Path(source).expanduser().resolve()
    if not path.is_dir():
        raise ProjectError(f"source {source}: no such folder; give a git URL or the path of a git repository")
    return Source("file", str(path))


def fetch_env(source: Source) -> dict[str, str]:
    """git_ops' safe environment plus exactly the transport `source` needs."""
    extra = {"GIT_ALLOW_PROTOCOL": source.scheme, "GIT_PROTOCOL_FROM_USER": "0"}
    if source.scheme in ("http", "https"):
        extra.update({name: os.environ[name] for name in PROXY_VARIABLES if name in os.environ})
    if source.scheme == "ssh":
        # The operator's own ssh identity (keys, known_hosts, agent); git's global config stays off.
        extra["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes -o ConnectTimeout=30 -o ServerAliveInterval=15"
        extra["HOME"] = os.environ.get("HOME", "/nonexistent")
        if "SSH_AUTH_SOCK" in os.environ:
            extra["SSH_AUTH_SOCK"] = os.environ["SSH_AUTH_SOCK"]
    return safe_env(extra)


def git_argv(git_dir: Path, source: Source, *args: str) -> list[str]:
    command = ["git", f"--git-dir={git_dir}"]
    for item in (*SAFE_CONFIG, *FETCH_CONFIG, f"protocol.{source.scheme}.allow=always"):
        command += ["-c", item]
    return command + list(args)


def run_fetch(git_dir: Path, source: Source, max_mb: int, timeout_s: float = FETCH_TIMEOUT_S) -> None:
    """Fetch every branch and tag of `source` into the bare `git_dir`: forced, pruned, all or none."""
    argv = git_argv(
        git_dir,
        source,
        "fetch",
        "--quiet",
        "--prune",
        "--atomic",
        "--no-tags",
        "--no-recurse-submodules",
        "--no-write-fetch-head",
        "--no-auto-maintenance",
        "--end-of-options",
        source.location,
        *SOURCE_REFSPECS,
    )
    _run(argv, source, git_dir, timeout_s, max_mb, "fetching")
    size = folder_mb(git_dir)
    if size > max_mb:
        raise MirrorSizeError(_too_large(source, size, max_mb))


def remote_default_branch(scratch: Path, source: Source, timeout_s: float = 120) -> str | None:
    """The branch the source's HEAD names (`git ls-remote --symref`), or None if it names none.

    `scratch` is any empty bare repository of ours: git is never started without a git dir, so it
    cannot discover a repository around the current folder.
    """
    argv = git_argv(scratch, source, "ls-remote", "--symref", "--end-of-options", source.location, "HEAD")
    out = _run(argv, source, scratch, timeout_s, None, "reaching")
    for line in out.splitlines():
        if line.startswith("ref: refs/heads/") and line.endswith("\tHEAD"):
            return line[len("ref: refs/heads/") : -len("\tHEAD")]
    return None


def folder_mb(path: Path) -> float:
    """The size of every file under `path` in MB (links not followed), 0 if it is gone."""
    total, pending = 0, [str(path)]
    while pending:
        try:
            with os.scandir(pending.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            pending.append(entry.path)
                        else:
                            total += entry.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:
                        continue
        except (FileNotFoundError, NotADirectoryError):
            continue
    return total / (1024 * 1024)


def _run(argv: list[str], source: Source, git_dir: Path, timeout_s: float, max_mb: int | None, verb: str) -> str:
    """Run git in its own process group, killed whole at the deadline or when git_dir outgrows max_mb."""
    try:
        process = subprocess.Popen(
            argv,
            cwd=git_dir,
            env=fetch_env(source),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    except OSError as exc:
        raise ProjectError(f"could not run git to fetch {source.shown}: {exc}; is git installed?") from exc
    deadline = time.monotonic() + timeout_s
    chunks: list[tuple[bytes, bytes]] = []
    while True:
        try:
            chunks.append(process.communicate(timeout=POLL_S))
            break
        except subprocess.TimeoutExpired:
            pass
        size = folder_mb(git_dir) if max_mb is not None else 0.0
        if max_mb is not None and size > max_mb:
            _kill(process)
            raise MirrorSizeError(_too_large(source, size, max_mb))
        if time.monotonic() > deadline:
            _kill(process)
            raise ProjectError(
                f"{verb} {source.shown} took longer than {timeout_s:g} s and was stopped; "
                "check that the server answers (and is not just slow), then try again"
            )
    out, err = chunks[-1]
    if process.returncode != 0:
        raise ProjectError(explain_failure(source, err.decode(errors="replace"), verb))
    return out.decode(errors="replace")


def _die_with_parent() -> None:
    """In the child: be killed when the supervisor dies (even by kill -9), so no fetch outlives it."""
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def _kill(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.communicate()


def _too_large(source: Source, size: float, max_mb: int) -> str:
    return (
        f"the mirror of {source.shown} grew past max_mirror_mb = {max_mb} ({size:.1f} MB) and was refused; "
        "raise max_mirror_mb in the project's project.toml (or --max-mirror-mb on add) if that size is expected"
    )


def explain_failure(source: Source, stderr: str, verb: str) -> str:
    """git's failure as a sentence that says what to check."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    said = "; ".join(lines[-3:]) or "git gave no reason"
    low = stderr.lower()
    if "terminal prompts disabled" in low or "could not read username" in low or "authentication failed" in low:
        hint = "it asks for credentials and the supervisor gives none: use a public URL or an ssh URL with a key"
    elif "permission denied (publickey" in low or "host key verification failed" in low:
        hint = "ssh refused: add the supervisor user's key to the server and the host to its known_hosts"
    elif any(
        word in low
        for word in ("could not resolve", "connection refused", "failed to connect", "timed out", "unreachable")
    ):
        hint = "the server did not answer: check the URL, the network, and that the server is up"
    elif "dubious ownership" in low:
        hint = "the folder belongs to another user, so git refuses it: make a clone you own, or serve it by URL"
    elif "fsck" in low or "object" in low and "bad" in low:
        hint = "the repository holds malformed objects (transfer.fsckObjects refused them)"
    elif "not found" in low or "does not appear to be a git repository" in low or "not a git repository" in low:
        hint = "there is no git repository there: check the URL or path"
    else:
        hint = "check the source and try again"
    return f"{verb} {source.shown} failed: {hint} (git: {said})"
