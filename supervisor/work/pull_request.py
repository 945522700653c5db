"""A pull request for a task, opened by the supervisor through GitHub's REST API; and delivery's error.

The body quotes the agent's summary, which is hostile text: it is stripped of control and format
characters, cut to a size, and escaped so it renders as plain text — no HTML, no links or images,
no headings, no @-mention or #-reference that would notify anyone (a zero-width space follows
every `@` and `#`). The verdict and its lists are the supervisor's, but test ids come from the
project's code and are escaped the same way.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping
from typing import Any, Literal

import httpx2
from pydantic import BaseModel, ConfigDict, ValidationError

from supervisor.base.errors import OuroborosError
from supervisor.store.instance import ContributeSettings
from supervisor.store.projects import ProjectConfig
from supervisor.store.tasks.models import Task
from supervisor.work.credentials import may_carry_token, resolve_token

ZWSP = "\u200b"
MAX_SUMMARY = 4000  # characters of the agent's summary, after escaping
MAX_TITLE = 200
MAX_TEST_ID = 300
MAX_TESTS_SHOWN = 50
MAX_REASON = 1000
MAX_RESPONSE = 1024 * 1024
MAX_ERROR_TEXT = 300
API_VERSION = "2022-11-28"
_DROPPED = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}  # controls, bidi/zero-width, surrogates, unassigned
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_BACKSLASHED = set("\\`*_[]|~")  # links and images need [ ], so ( ) ! stay as they are


class DeliveryError(OuroborosError):
    """A delivery that cannot be done, said as what to fix (a verdict, a setting, a remote, a token)."""


class PullRequestReport(BaseModel):
    """The pull request GitHub opened."""

    model_config = ConfigDict(extra="forbid")

    task_id: int
    repo: str
    number: int
    url: str
    head: str
    base: str
    title: str


class _Created(BaseModel):
    model_config = ConfigDict(extra="ignore")

    number: int
    html_url: str


def open_pull_request(
    task: Task,
    project: ProjectConfig,
    settings: ContributeSettings,
    *,
    head_branch: str,
    environ: Mapping[str, str] | None = None,
) -> PullRequestReport:
    """Open a pull request of `head_branch` (already pushed) against the base branch; DeliveryError on any failure."""
    if settings.github_repo is None:
        raise DeliveryError(
            'no GitHub repository to open the pull request on: set [contribute] github_repo = "owner/name"'
        )
    api = settings.github_api.rstrip("/")
    if not may_carry_token(api):
        raise DeliveryError(
            f"refusing to send the token over plain http to {api}; use https in [contribute] github_api"
        )
    token = resolve_token(settings, environ)
    if token is None:
        raise DeliveryError("no GitHub token: set [contribute] token_env (an environment variable) or token_file")
    base = settings.base_branch or project.default_branch
    title = pull_request_title(task)
    payload = {"title": title, "head": head_branch, "base": base, "body": pull_request_body(task, project)}
    url = f"{api}/repos/{settings.github_repo}/pulls"
    status, answer = _post(url, payload, token, settings.api_timeout_s)
    if status != 201:
        raise DeliveryError(_api_problem(status, answer, settings, head_branch, base))
    try:
        created = _Created.model_validate(answer)
    except ValidationError as exc:
        raise DeliveryError(f"GitHub answered 201 at {url} without a pull request number and address") from exc
    return PullRequestReport(
        task_id=task.id,
        repo=settings.github_repo,
        number=created.number,
        url=created.html_url,
        head=head_branch,
        base=base,
        title=title,
    )


def pull_request_title(task: Task) -> str:
    return _plain(task.title, MAX_TITLE, style="title")


def pull_request_body(task: Task, project: ProjectConfig) -> str:
    """The body: the supervisor's verdict and lists first, then the agent's words, quoted and escaped."""
    verdict = task.verdict
    lines = [
        f"Made by the Ouroboros supervisor for task {task.id} of project `{project.name}`: "
        f"{_plain(task.title, MAX_TITLE, style='line')}",
        "",
    ]
    if verdict is None:
        lines.append("**Verdict: not judged**")
    else:
        tests = verdict.tests
        lines += [
            f"**Verdict: {verdict.outcome}** — judged by the supervisor with the project's own tests in isolated "
            "containers, not by the agent.",
            f"Reason: {_plain(verdict.reason, MAX_REASON, style='line')}",
            "",
            f"- Tests that failed before and pass now (FAIL_TO_PASS): {len(tests.fail_to_pass_passed)}",
            *_test_lines(tests.fail_to_pass_passed),
            f"- Still failing: {len(tests.fail_to_pass_failed) or 'none'}",
            *_test_lines(tests.fail_to_pass_failed),
            f"- Regressions: {len(tests.regressions) or 'none'}",
            *_test_lines(tests.regressions),
            f"- Other tests checked (PASS_TO_PASS): {tests.pass_to_pass_checked}",
            f"- Tokens used: {verdict.tokens}",
        ]
        if verdict.needs_review:
            reasons = "; ".join(verdict.review_reasons) or "it touches tests or test machinery"
            lines.append(f"- **Needs review**: {_plain(reasons, MAX_REASON, style='line')}")
    lines += ["", "### Summary by the agent (its own words, not checked by the supervisor)", ""]
    summary = _plain(task.summary or "(no summary)", MAX_SUMMARY)
    lines += ["> " + line if line else ">" for line in summary.split("\n")]
    return "\n".join(lines) + "\n"


def _test_lines(ids: list[str]) -> list[str]:
    shown = [f"  - {_plain(test_id, MAX_TEST_ID, style='line')}" for test_id in ids[:MAX_TESTS_SHOWN]]
    if len(ids) > MAX_TESTS_SHOWN:
        shown.append(f"  - … and {len(ids) - MAX_TESTS_SHOWN} more")
    return shown


def _plain(text: str, limit: int, *, style: Literal["markdown", "line", "title", "text"] = "markdown") -> str:
    """`text` made inert, at most `limit` characters (see the module docstring).

    markdown: escaped, lines kept; line: escaped, on one line; title: on one line, mentions broken;
    text: on one line, only control and format characters dropped (GitHub's own error words).
    """
    out: list[str] = []
    size = 0
    for char in text:
        if char in "\r\n\t" and style != "markdown":
            char = " "
        elif char == "\r":
            continue
        elif char not in "\n\t" and unicodedata.category(char) in _DROPPED:
            continue
        if style in ("markdown", "line"):
            piece = _escape(char)
        else:
            piece = char + ZWSP if style == "title" and char in "@#" else char
        if size + len(piece) > limit:
            out.append(" …(cut)")
            break
        out.append(piece)
        size += len(piece)
    return "".join(out)


def _escape(char: str) -> str:
    if char in _ENTITIES:
        return _ENTITIES[char]
    if char in _BACKSLASHED:
        return "\\" + char
    if char in "@#":
        return char + ZWSP
    return char


def _post(url: str, payload: dict[str, str], token: str, timeout_s: float) -> tuple[int, Any]:
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": API_VERSION,
        "User-Agent": "ouroboros-supervisor",
    }
    try:
        with (
            httpx2.Client(trust_env=False, timeout=timeout_s, follow_redirects=False) as client,
            client.stream("POST", url, json=payload, headers=headers) as response,
        ):
            data = b""
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > MAX_RESPONSE:
                    break
            status = response.status_code
    except httpx2.TimeoutException as exc:
        raise DeliveryError(
            f"GitHub's API at {url} did not answer within {timeout_s:g} s; try again, or raise [contribute] api_timeout_s"
        ) from exc
    except httpx2.HTTPError as exc:
        raise DeliveryError(
            f"could not reach GitHub's API at {url}: {exc}; check [contribute] github_api and the network"
        ) from exc
    try:
        return status, json.loads(data)
    except ValueError:
        return status, None


def _api_problem(status: int, answer: Any, settings: ContributeSettings, head: str, base: str) -> str:
    said = _github_message(answer)
    repo = settings.github_repo
    if status == 401:
        return (
            f"GitHub refused the token (401 {said}): it is wrong or expired; renew it where token_env/token_file point"
        )
    if status == 403:
        return (
            f"GitHub forbade opening a pull request on {repo} (403 {said}): the token needs "
            "'pull requests: write' on it, or a rate limit was hit; wait or fix the token's permissions"
        )
    if status == 404:
        return (
            f"GitHub has no repository {repo} this token can see (404 {said}): check [contribute] github_repo "
            "and that the token has access to it"
        )
    if status == 422 and "already exists" in said.lower():
        return f"a pull request of {head} into {base} already exists on {repo} ({said}); nothing to do"
    if status == 422:
        return (
            f"GitHub refused the pull request of {head} into {base} (422 {said}): push the branch first "
            "(`supervisor task push ID`) and check the base branch exists ([contribute] base_branch)"
        )
    return f"GitHub answered {status} ({said}) to opening a pull request on {repo}; try again later"


def _github_message(answer: Any) -> str:
    """GitHub's own words from an error answer: `message` and each error's `message`, cut short."""
    if not isinstance(answer, dict):
        return "no explanation"
    parts = [str(answer.get("message", ""))]
    for error in answer.get("errors") or []:
        if isinstance(error, dict) and error.get("message"):
            parts.append(str(error["message"]))
    text = ": ".join(part for part in parts if part) or "no explanation"
    return _plain(text, MAX_ERROR_TEXT, style="text")
