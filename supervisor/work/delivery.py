"""Delivery of a task's result, by the supervisor only: a patch, a pushed branch, a pull request.

The agent never sees a credential, a remote or the network; everything here runs in the supervisor
with its own credentials (supervisor/work/credentials.py). What was not a clean pass — any other
verdict, or a passed one marked for review because it touches tests or test machinery — is never
pushed automatically, and by hand only with `force` (docs/delivery.md).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict

from supervisor.base.errors import OuroborosError
from supervisor.base.git_ops import Git, safe_env
from supervisor.store.instance import REMOTE_PATTERN, ContributeSettings
from supervisor.store.projects import ProjectConfig
from supervisor.store.tasks.models import Task, TaskState
from supervisor.work.credentials import credential_setup, may_carry_token, resolve_token
from supervisor.work.pull_request import DeliveryError, PullRequestReport, open_pull_request

__all__ = [
    "DeliveryError",
    "DeliveryOutcome",
    "PullRequestReport",
    "PushReport",
    "auto_deliver",
    "check_deliverable",
    "export_patch",
    "open_pull_request",
    "push",
    "task_branch",
]

MAX_GIT_MESSAGE = 2000
_NO_ANSWER = (
    "could not resolve host",
    "connection refused",
    "failed to connect",
    "couldn't connect",
    "timed out",
    "no route to host",
    "network is unreachable",
)
# Applied to every push on top of git_ops.SAFE_CONFIG (which already disables hooks and helpers).
PUSH_CONFIG = (
    "http.followRedirects=false",  # a redirect would carry the credential to another host
    "http.lowSpeedLimit=1000",
    "http.lowSpeedTime=30",
    "push.gpgSign=false",
    "push.recurseSubmodules=no",
    "push.followTags=false",
)


class PushReport(BaseModel):
    """What `push` did: the task's result commit is on the remote under `branch`."""

    model_config = ConfigDict(extra="forbid")

    task_id: int
    remote: str  # as shown to people: never with a credential
    branch: str
    commit: str
    status: Literal["created", "updated", "up-to-date"]
    verdict: str | None
    needs_review: bool
    forced: bool  # pushed by hand despite a verdict that is not a clean pass


class DeliveryOutcome(BaseModel):
    """What `auto_deliver` did after a verdict, for the journal; it never raises for a delivery failure."""

    model_config = ConfigDict(extra="forbid")

    task_id: int
    action: Literal["skipped", "pushed", "opened-pr", "failed"]
    reason: str
    push: PushReport | None = None
    pull_request: PullRequestReport | None = None
    error: str | None = None


def task_branch(task: Task, settings: ContributeSettings) -> str:
    """The task's branch name on the remote: the configured prefix followed by the task id."""
    return f"{settings.branch_prefix}{task.id}"


def check_deliverable(task: Task, *, force: bool = False) -> str:
    """The result commit to deliver; DeliveryError when there is none, or (without `force`) no clean pass."""
    if task.result_commit is None:
        raise DeliveryError(
            f"task {task.id} has no result yet (it is {task.state}); deliver it after the agent finished "
            f"and it was judged (`supervisor task show {task.id}`)"
        )
    if force:
        return task.result_commit
    verdict = task.verdict
    if verdict is None or verdict.outcome != "passed" or task.state is not TaskState.PASSED:
        judged = verdict.outcome if verdict else "not judged"
        raise DeliveryError(
            f"task {task.id} is {task.state} (verdict: {judged}): only a passed task is delivered; "
            f"read its diff (`supervisor task show {task.id}`) and pass --force to deliver it anyway"
        )
    if verdict.needs_review:
        why = "; ".join(verdict.review_reasons) or "it touches tests or test machinery"
        raise DeliveryError(
            f"task {task.id} passed but needs review ({why}): its verdict could be the agent's own doing; "
            f"read its diff (`supervisor task show {task.id}`) and pass --force to deliver it"
        )
    return task.result_commit


def export_patch(mirror: Path, task: Task) -> bytes:
    """The task's change as a binary-safe diff from its base commit to its result (applies with `git apply`)."""
    commit = check_deliverable(task, force=True)
    git = _mirror(mirror, task)
    for name, rev in (("base", task.base_commit), ("result", commit)):
        if git.rev_parse(rev) is None:
            raise DeliveryError(
                f"the {name} commit {rev[:12]} of task {task.id} is not in the mirror {mirror}; "
                f"fetch the project again (`supervisor project fetch {task.project}`) or retry the task"
            )
    flags = ("-r", "-p", "--binary", "--full-index", "--no-renames", "--no-ext-diff", "--no-textconv", "--no-color")
    return git.run("diff-tree", *flags, task.base_commit, commit).stdout


def push(
    mirror: Path,
    task: Task,
    settings: ContributeSettings,
    remote: str | None = None,
    *,
    force: bool = False,
    environ: Mapping[str, str] | None = None,
) -> PushReport:
    """Push the task's result commit to `remote` (default: settings.remote) as `<branch_prefix><id>`.

    Refused (DeliveryError) for a task without a clean passed verdict unless `force`; a branch the
    remote already holds at another commit is never overwritten.
    """
    commit = check_deliverable(task, force=force)
    url = _remote(remote if remote is not None else settings.remote)
    git = _mirror(mirror, task)
    if git.rev_parse(commit) is None:
        raise DeliveryError(
            f"the result commit {commit[:12]} of task {task.id} is not in the mirror {mirror}; retry the task"
        )
    branch = task_branch(task, settings)
    if git.run("check-ref-format", f"refs/heads/{branch}", check=False).returncode != 0:
        raise DeliveryError(f"{branch!r} is not a valid branch name; fix [contribute] branch_prefix")
    token = _token_for(url, settings, environ)
    shown = shown_url(url)
    helper, extra = credential_setup(settings.token_user, token)
    config = (f"protocol.{urlsplit(url).scheme or 'file'}.allow=always", *PUSH_CONFIG, *helper)
    args = ["push", "--porcelain", "--no-verify", url, f"{commit}:refs/heads/{branch}"]
    command = git.command(*[item for pair in config for item in ("-c", pair)], *args)
    try:
        done = _run_group(command, git.git_dir, safe_env(extra), settings.push_timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise DeliveryError(
            f"the push of task {task.id} to {shown} did not finish within {settings.push_timeout_s:g} s; "
            "check the remote answers, or raise [contribute] push_timeout_s"
        ) from exc
    except OSError as exc:
        raise DeliveryError(f"could not run git to push task {task.id}: {exc}") from exc
    status = _push_status(done, branch, shown, token)
    verdict = task.verdict
    return PushReport(
        task_id=task.id,
        remote=shown,
        branch=branch,
        commit=commit,
        status=status,
        verdict=verdict.outcome if verdict else None,
        needs_review=bool(verdict and verdict.needs_review),
        forced=force and not _clean_pass(task),
    )


def _run_group(
    command: list[str], cwd: Path, env: dict[str, str], timeout_s: float
) -> subprocess.CompletedProcess[bytes]:
    """Run `command` in its own process group; past the deadline the whole group is killed (git's
    transport helpers too, which would otherwise outlive it holding the connection)."""
    with subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    ) as process:
        try:
            out, err = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
        return subprocess.CompletedProcess(command, process.returncode, out, err)


def auto_deliver(
    task: Task,
    project: ProjectConfig,
    mirror: Path,
    settings: ContributeSettings,
    *,
    environ: Mapping[str, str] | None = None,
) -> DeliveryOutcome:
    """What the loop calls after a verdict: deliver a clean pass when `[contribute] auto = "passed"`.

    Never raises for a verdict that is not delivered or for a failed delivery (the error text is
    returned for the journal); only a clean pass is ever pushed, never with force.
    """
    skip = _why_not_automatic(task, settings)
    if skip is not None:
        return DeliveryOutcome(task_id=task.id, action="skipped", reason=skip)
    try:
        pushed = push(mirror, task, settings, environ=environ)
    except OuroborosError as exc:
        return DeliveryOutcome(task_id=task.id, action="failed", reason="the push failed", error=str(exc))
    if settings.github_repo is None:
        return DeliveryOutcome(task_id=task.id, action="pushed", reason="pushed; no github_repo for a PR", push=pushed)
    try:
        opened = open_pull_request(task, project, settings, head_branch=pushed.branch, environ=environ)
    except OuroborosError as exc:
        return DeliveryOutcome(
            task_id=task.id, action="pushed", reason="pushed; the pull request failed", push=pushed, error=str(exc)
        )
    return DeliveryOutcome(
        task_id=task.id, action="opened-pr", reason="pushed and opened a pull request", push=pushed, pull_request=opened
    )


def shown_url(url: str) -> str:
    """`url` as it may be printed and journaled: no user, password, query or fragment."""
    parts = urlsplit(url)
    if not parts.scheme:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _mirror(mirror: Path, task: Task) -> Git:
    if not (mirror / "objects").is_dir():
        raise DeliveryError(
            f"there is no mirror of project {task.project!r} at {mirror}; add the project again "
            f"(`supervisor project add`) and fetch it, or retry the task"
        )
    return Git(mirror)


def _remote(url: str | None) -> str:
    if not url:
        raise DeliveryError("no remote to push to: set [contribute] remote in ouroboros.toml or pass --remote URL")
    if not re.match(REMOTE_PATTERN, url):
        raise DeliveryError(
            f"refusing remote {shown_url(url)!r}: give an https://, http:// or file:// URL or an absolute path, "
            "without a user or password in it (the token goes in [contribute] token_env or token_file)"
        )
    return url


def _token_for(url: str, settings: ContributeSettings, environ: Mapping[str, str] | None) -> str | None:
    if urlsplit(url).scheme not in ("http", "https"):
        return None
    if settings.token_env is None and settings.token_file is None:
        return None
    if not may_carry_token(url):
        raise DeliveryError(f"refusing to send the token over plain http to {shown_url(url)}; use an https:// remote")
    return resolve_token(settings, environ)


def _push_status(
    done: subprocess.CompletedProcess[bytes], branch: str, shown: str, token: str | None
) -> Literal["created", "updated", "up-to-date"]:
    out = done.stdout.decode(errors="replace")
    flags = [line.split("\t", 1)[0] for line in out.splitlines() if f"refs/heads/{branch}" in line]
    if done.returncode == 0 and flags:
        if flags[0] == "*":
            return "created"
        return "up-to-date" if flags[0] == "=" else "updated"
    said = (done.stderr.decode(errors="replace") + "\n" + out).strip()
    if token:
        said = said.replace(token, "***")
    raise DeliveryError(_push_problem(said, branch, shown))


def _push_problem(said: str, branch: str, shown: str) -> str:
    lower = said.lower()
    if "could not read username" in lower or "terminal prompts disabled" in lower:
        hint = "the remote asks for credentials: set [contribute] token_env or token_file"
    elif any(words in lower for words in ("authentication failed", "error: 403", "permission denied", "denied to")):
        hint = "the remote refused the credentials: check the token and that it may push to this repository"
    elif "non-fast-forward" in lower or "fetch first" in lower or "[rejected]" in lower:
        hint = f"the remote already holds {branch} at another commit; delete that branch there to push again"
    elif any(words in lower for words in _NO_ANSWER):
        hint = "the remote does not answer: check [contribute] remote (or --remote) and the network"
    elif "not a git repository" in lower or "not found" in lower or "does not appear" in lower:
        hint = "there is no repository at that address: check [contribute] remote (or --remote)"
    else:
        hint = "git's own words are quoted before this"
    tail = said[-MAX_GIT_MESSAGE:].strip().replace("\n", " | ")
    return f"the push to {shown} failed: {tail}; {hint}"


def _clean_pass(task: Task) -> bool:
    verdict = task.verdict
    return bool(task.state is TaskState.PASSED and verdict and verdict.outcome == "passed" and not verdict.needs_review)


def _why_not_automatic(task: Task, settings: ContributeSettings) -> str | None:
    if settings.auto != "passed":
        return 'not delivered: [contribute] auto is "never" (deliver by hand with `supervisor task push`)'
    if not _clean_pass(task):
        verdict = task.verdict
        if verdict is not None and verdict.outcome == "passed" and verdict.needs_review:
            return "not delivered: the result passed but needs review (" + "; ".join(verdict.review_reasons) + ")"
        return f"not delivered: only a passed task is delivered automatically (this one is {task.state})"
    if not settings.remote:
        return "not delivered: no [contribute] remote is set"
    if task.result_commit is None:
        return "not delivered: the task has no result commit"
    return None
