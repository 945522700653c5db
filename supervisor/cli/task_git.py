"""What the task commands check in a project's mirror before queueing, and the files they read.

Everything runs through `Git` on the supervisor's own bare mirror (HOME/projects/NAME/mirror.git):
a base resolved to a commit, a hidden test patch checked with `git apply --cached --check` in a
throw-away index (nothing is written to the mirror), and the diff `task show` prints.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from supervisor.base.git_ops import Git, GitError
from supervisor.base.safe_fs import Bound, UnsafeFileError, read_fd
from supervisor.store.projects import ProjectConfig, ProjectRegistry
from supervisor.store.tasks.models import TaskError

MAX_DIFF = 1_000_000  # characters of a result's diff `task show` prints


def mirror_git(registry: ProjectRegistry, name: str) -> Git:
    """The project's mirror; TaskError if it has not been fetched yet."""
    mirror = registry.mirror(name)
    if not (mirror / "HEAD").is_file():
        raise TaskError(f"project {name!r} has no mirror yet ({mirror}); run `supervisor project fetch {name}`")
    return Git(mirror)


def resolve_base(registry: ProjectRegistry, project: ProjectConfig, rev: str | None) -> str:
    """The commit `rev` (default: the project's default branch) names in the project's mirror."""
    wanted = rev or project.default_branch
    commit = mirror_git(registry, project.name).rev_parse(wanted)
    if commit is None:
        raise TaskError(
            f"{wanted!r} names no commit in the mirror of {project.name!r}; give a branch, tag or commit id it "
            f"has (run `supervisor project fetch {project.name}` if it is new)"
        )
    return commit


def has_commit(git: Git, commit: str) -> bool:
    return git.rev_parse(commit) == commit


def patch_problems(git: Git, base: str, patches: Iterable[tuple[int, str]]) -> dict[int, str]:
    """For each (key, patch) that does not apply to `base`: key → git's words. Empty patches apply."""
    problems: dict[int, str] = {}
    wanted = [(key, patch) for key, patch in patches if patch]
    if not wanted:
        return problems
    with tempfile.TemporaryDirectory(prefix="ouroboros-patch-") as scratch:
        index = Path(scratch) / "index"
        git.run("read-tree", base, index_file=index)  # one index per base; --check never writes it
        for key, patch in wanted:
            done = git.run(
                "apply", "--cached", "--check", "-", input=patch.encode("utf-8"), index_file=index, check=False
            )
            if done.returncode != 0:
                words = done.stderr.decode("utf-8", "replace").strip().splitlines()
                problems[key] = "; ".join(words[:3]) or f"git apply exited {done.returncode}"
    return problems


def check_patch(git: Git, base: str, patch: str) -> None:
    """TaskError if the test patch does not apply to `base`."""
    problem = patch_problems(git, base, [(0, patch)]).get(0)
    if problem is not None:
        raise TaskError(
            f"the test patch does not apply to {base[:12]}: {problem}; make it against that commit or give --base"
        )


def result_diff(git: Git, base: str, result: str) -> str:
    """The diff of the agent's result against the base (cut at MAX_DIFF characters, and said so)."""
    try:
        text = git.diff(base, result)
    except GitError as exc:
        raise TaskError(f"no diff of the result {result[:12]} in the project mirror: {exc}") from exc
    if len(text) > MAX_DIFF:
        return text[:MAX_DIFF] + f"\n[diff cut at {MAX_DIFF} characters; read the branch in the mirror]"
    return text


def read_text_file(path: Path, max_chars: int, what: str) -> str:
    """An operator's file as UTF-8 text of at most `max_chars`; a FIFO or device is refused, not waited on."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise TaskError(f"cannot read the {what} {path}: {exc.strerror}") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise TaskError(f"the {what} {path} is not a regular file; give a file")
        data = read_fd(fd, max_chars * 4, Bound.REFUSE, str(path)).data
    except UnsafeFileError as exc:
        raise TaskError(f"the {what} {path} is too big (at most {max_chars} characters); shorten it") from exc
    finally:
        os.close(fd)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TaskError(f"the {what} {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from exc
    if len(text) > max_chars:
        raise TaskError(f"the {what} {path} is too big ({len(text)} characters, at most {max_chars}); shorten it")
    return text
