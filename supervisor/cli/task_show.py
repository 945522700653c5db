"""`supervisor task show`, and how every task command prints a task (text or JSON).

A task's summary, its result's diff, test names and the verdict's reason may all hold the agent's
bytes: text goes out through `emit` (terminal-safe). The hidden test patch is never printed, in
text or JSON; only its size is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from supervisor.cli.common import emit, home_option, json_option
from supervisor.cli.task_contract import TaskOut, TaskShowOut
from supervisor.cli.task_git import mirror_git, result_diff
from supervisor.store.instance import Instance
from supervisor.store.projects import ProjectRegistry
from supervisor.store.tasks.models import Attempt, Task, TaskError
from supervisor.store.tasks.sqlite_queue import SqliteTaskQueue, open_queue


def instance_queue(home: Path | None) -> tuple[Instance, SqliteTaskQueue]:
    """The instance HOME names and its task queue (the caller closes the queue)."""
    instance = Instance.locate(home)
    return instance, open_queue(instance.tasks_db)


def task_json(task: Task) -> dict[str, Any]:
    """The task as printed under --json: every field but the hidden test patch, which is only sized."""
    data = task.model_dump(exclude={"test_patch"})
    data["test_patch_bytes"] = len(task.test_patch.encode("utf-8"))
    return TaskOut.model_validate(data).model_dump(mode="json")


def task_line(task: Task) -> str:
    """One line per task, as `task list` and the commands that change a task print it."""
    return (
        f"{task.id:>6}  {task.state.value:<14} {task.priority:>5}  {task.project:<20} {task.attempts:>3}  {task.title}"
    )


LIST_HEADER = f"{'ID':>6}  {'STATE':<14} {'PRI':>5}  {'PROJECT':<20} {'TRY':>3}  TITLE"


def _tests(label: str, items: list[str] | None, none_means: str = "none") -> list[str]:
    if items is None:
        return [f"{label}: {none_means}"]
    return [f"{label} ({len(items)}):" if items else f"{label}: none"] + [f"  {item}" for item in items]


def render_task(task: Task) -> list[str]:
    lines = [
        f"task {task.id}  {task.state}  priority {task.priority}",
        f"project      {task.project}  base {task.base_commit}",
        f"title        {task.title}",
        f"source       {task.source}" + (f"  ({task.external_id})" if task.external_id else ""),
        f"created      {task.created_at.isoformat()}  updated {task.updated_at.isoformat()}",
        f"attempts     {task.attempts}  fence {task.fence}",
    ]
    if task.worker:
        lines.append(
            f"held by      {task.worker} until {task.lease_expires_at.isoformat() if task.lease_expires_at else '?'}"
        )
    if task.result_commit:
        lines.append(f"result       {task.result_commit}" + (f" on {task.result_branch}" if task.result_branch else ""))
    if task.note:
        lines.append(f"note         {task.note}")
    lines.append(f"test patch   {len(task.test_patch.encode('utf-8'))} bytes (hidden from the agent; not shown)")
    lines += _tests("FAIL_TO_PASS", task.fail_to_pass)
    lines += _tests("PASS_TO_PASS", task.pass_to_pass, "every test that passes on the base")
    return lines


def render_verdict(task: Task) -> list[str]:
    verdict = task.verdict
    if verdict is None:
        return ["verdict      none yet"]
    lines = [f"verdict      {verdict.outcome}: {verdict.reason}"]
    lines.append(f"  tokens {verdict.tokens}  tests {verdict.test_time_s:.1f}s  total {verdict.duration_s:.1f}s")
    tests = verdict.tests
    lines += ["  " + line for line in _tests("fail-to-pass passed", tests.fail_to_pass_passed)]
    lines += ["  " + line for line in _tests("fail-to-pass still failing", tests.fail_to_pass_failed)]
    lines += ["  " + line for line in _tests("regressions", tests.regressions)]
    lines.append(f"  pass-to-pass checked: {tests.pass_to_pass_checked}")
    if verdict.needs_review:
        lines.append("  NEEDS REVIEW (never pushed automatically): " + "; ".join(verdict.review_reasons))
    if verdict.refused:
        lines.append("  refused in the work area: " + ", ".join(verdict.refused))
    return lines


def render_attempts(attempts: list[Attempt]) -> list[str]:
    lines = [f"attempts ({len(attempts)})" if attempts else "attempts     none"]
    for attempt in attempts:
        end = (
            f"ended {attempt.ended_at.isoformat()} as {attempt.ended_as}"
            if attempt.ended_at and attempt.ended_as
            else "not ended"
        )
        line = f"  {attempt.number}  fence {attempt.fence}  {attempt.worker}  {attempt.started_at.isoformat()}  {end}"
        if attempt.reason:
            line += f": {attempt.reason}"
        if attempt.refused_late:
            line += "  [a late write with this attempt's fence was refused]"
        lines.append(line)
    return lines


def result_diff_of(instance: Instance, task: Task) -> tuple[str | None, str | None]:
    """(the result's diff against the base, None) when there is a result; (None, why not) if it cannot be read."""
    if not task.result_commit:
        return None, None
    try:
        git = mirror_git(ProjectRegistry(instance.projects), task.project)
        return result_diff(git, task.base_commit, task.result_commit), None
    except TaskError as exc:
        return None, str(exc)


def render_show(task: Task, attempts: list[Attempt], diff: str | None, diff_note: str | None) -> str:
    lines = render_task(task) + render_verdict(task) + render_attempts(attempts)
    if task.summary:
        lines += ["summary (the agent's words):"] + [f"  {line}" for line in task.summary.splitlines()]
    if task.body:
        lines += ["problem statement:"] + [f"  {line}" for line in task.body.splitlines()]
    if diff is not None:
        lines += [f"diff {task.base_commit[:12]}..{task.result_commit or ''}:", diff]
    elif diff_note:
        lines.append(f"diff         unavailable: {diff_note}")
    return "\n".join(lines)


@click.command("show")
@click.argument("task_id", type=int, metavar="ID")
@home_option
@json_option
def show_cmd(task_id: int, home: Path | None, as_json: bool) -> None:
    """Show a task: fields, verdict, test lists, attempts, and its result's diff against the base."""
    instance, queue = instance_queue(home)
    try:
        task, attempts = queue.get(task_id), queue.attempts(task_id)
    finally:
        queue.close()
    diff, diff_note = result_diff_of(instance, task)
    data = TaskShowOut.model_validate(
        {"task": task_json(task), "attempts": attempts, "diff": diff, "diff_note": diff_note}
    )
    emit(as_json, data, render_show(task, attempts, diff, diff_note))
