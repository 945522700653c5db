"""A fleet task's result diff, read from the shared results repository (`[fleet] results_remote`).

Nodes push each result to that repository under the task's `result_branch`
(refs/ouroboros/tasks/task-ID-ATTEMPT). A local bare repository is read in place with
`git --git-dir`; a URL is fetched (that one ref only, through the hardened fetch of
supervisor/work/git_fetch.py) into a temporary bare repository that is removed afterwards. The
diff is the agent's text: it is printed terminal-safe like every task diff.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

from supervisor.base.git_ops import Git, GitError
from supervisor.cli.task_git import result_diff
from supervisor.store.projects import ProjectError
from supervisor.store.tasks.models import Task, TaskError
from supervisor.work.git_fetch import classify_source, fetch_env, git_argv, redact

BRANCH = re.compile(r"^refs/[A-Za-z0-9][A-Za-z0-9._/-]{0,200}$")
FETCH_TIMEOUT_S = 300


def _local_repository(remote: str) -> Path | None:
    path = Path(remote.removeprefix("file://")) if "://" not in remote or remote.startswith("file://") else None
    if path is not None and path.is_dir() and (path / "HEAD").is_file() and (path / "objects").is_dir():
        return path
    return None


def _fetch_one(remote: str, branch: str, scratch: Path) -> Git:
    git = Git(scratch)
    git.run("init", "--quiet", "--bare", str(scratch))
    source = classify_source(remote)
    argv = git_argv(scratch, source, "fetch", "--quiet", "--no-tags", "--no-recurse-submodules", "--end-of-options")
    argv += [source.location, f"+{branch}:{branch}"]
    try:
        done = subprocess.run(
            argv, cwd=scratch, env=fetch_env(source), capture_output=True, timeout=FETCH_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TaskError(f"could not fetch {branch} from {redact(remote)}: {exc}") from exc
    if done.returncode != 0:
        words = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise TaskError(f"could not fetch {branch} from {redact(remote)}: {'; '.join(words[-3:])}")
    return git


def remote_result_diff(remote: str | None, task: Task) -> tuple[str | None, str | None]:
    """(diff, None), or (None, why there is none) when the task has a result; (None, None) when it has none."""
    if not task.result_commit:
        return None, None
    if not remote:
        return None, "no [fleet] results_remote in ouroboros.toml; set it to the fleet's shared results repository"
    branch = task.result_branch or ""
    if not BRANCH.match(branch) or ".." in branch:
        return None, f"the task names no readable result branch ({branch[:80]!r})"
    try:
        local = _local_repository(remote)
        if local is not None:
            return _diff(Git(local), task, branch, remote), None
        with tempfile.TemporaryDirectory(prefix="ouroboros-result-") as scratch:
            return _diff(_fetch_one(remote, branch, Path(scratch)), task, branch, remote), None
    except (TaskError, ProjectError, GitError) as exc:
        return None, str(exc)


def _diff(git: Git, task: Task, branch: str, remote: str) -> str:
    assert task.result_commit is not None
    at = git.ref_value(branch)
    if at is None:
        raise TaskError(f"{redact(remote)} has no {branch} (not pushed yet, or pushed elsewhere)")
    if git.rev_parse(task.result_commit) != task.result_commit:
        raise TaskError(f"{redact(remote)} has {branch} but not the result commit {task.result_commit[:12]}")
    return result_diff(git, task.base_commit, task.result_commit)
