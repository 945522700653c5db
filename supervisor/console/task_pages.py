"""The console's task figures: the trend per generation (scorecard) and the latest `task bench` runs."""

from __future__ import annotations

from supervisor.console.html import gen_link, percent, table, when, whole
from supervisor.console.svg import Bar, bar_chart
from supervisor.console.text import safe
from supervisor.console.view import InstanceView
from supervisor.store.scorecard import GenerationCard
from supervisor.store.tasks.bench_results import latest_reports


def task_trend_section(cards: list[GenerationCard]) -> str:
    """Per generation that was judged on tasks: pass rate and tokens per passed task, oldest first."""
    tried = [c for c in reversed(cards) if c.tasks_attempted or c.tasks_infrastructure]
    rates = [Bar(f"gen {c.generation}", (c.task_pass_rate or 0.0) * 100, f"/g/{c.generation}") for c in tried]
    costs = [
        Bar(f"gen {c.generation}", c.tokens_per_passed_task or 0.0, f"/g/{c.generation}")
        for c in tried
        if c.tokens_per_passed_task is not None
    ]
    rows = [
        (
            gen_link(c.generation),
            str(c.tasks_attempted),
            str(c.tasks_passed),
            str(c.tasks_failed),
            str(c.tasks_infrastructure),
            str(c.task_regressions),
            percent(c.task_pass_rate),
            whole(c.tokens_per_passed_task),
        )
        for c in reversed(tried)
    ]
    return (
        '<section id="tasks-trend"><h2>Tasks per generation</h2>'
        "<p>From the supervisor's task verdicts (decision log <code>task-judged</code> records); "
        "infrastructure verdicts are never counted against the agent.</p>"
        '<figure id="task-pass-rate"><figcaption>Task pass rate per generation (%)</figcaption>'
        + bar_chart("task pass rate per generation", rates, "%", "rate")
        + "</figure>"
        '<figure id="tokens-per-passed-task"><figcaption>Tokens per passed task, per generation</figcaption>'
        + bar_chart("tokens per passed task", costs, "tokens", "tokens")
        + "</figure>"
        + (
            table(
                ("gen", "attempted", "passed", "failed", "infrastructure", "regressions", "pass rate", "tokens/passed"),
                rows,
                "trend",
            )
            if rows
            else "<p>no task verdicts yet</p>"
        )
        + "</section>"
    )


def bench_section(view: InstanceView, count: int = 5) -> str:
    """The newest `supervisor task bench` reports (HOME/bench/), newest first."""
    reports = latest_reports(view.instance.home, count)
    if not reports:
        return ""
    rows = [
        (
            when(r.finished_at.timestamp()),
            gen_link(r.generation),
            safe(r.set_file, 200),
            str(len(r.tasks)),
            f"{r.passed}/{r.attempted}",
            percent(r.pass_rate),
            whole(r.tokens_per_passed_task),
            str(r.infrastructure),
            "" if r.complete else "incomplete",
        )
        for r in reports
    ]
    return (
        '<section id="bench"><h2>Task bench (latest runs)</h2>'
        "<p><code>supervisor task bench</code>: a fixed set of tasks run against one generation in a scratch "
        "instance, judged by the supervisor.</p>"
        + table(
            ("finished (UTC)", "generation", "set", "tasks", "passed", "pass rate", "tokens/passed", "infra", ""),
            rows,
            "bench",
        )
        + "</section>"
    )
