"""`supervisor task bench`: the number an operator compares across generations (docs/tasks.md)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from supervisor.cli.common import emit, home_option, json_option
from supervisor.cli.terminal_text import echo
from supervisor.store.tasks.bench_results import BenchReport


@click.command("bench")
@click.option("--generation", type=click.IntRange(min=0), required=True, help="The generation to measure (gen/N).")
@click.option(
    "--set",
    "set_file",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The tasks: SWE-bench-style JSONL, one instance a line, on the live instance's projects.",
)
@click.option("--keep", is_flag=True, help="Keep the scratch instance (its path is printed) to look at it.")
@home_option
@json_option
def bench_cmd(generation: int, set_file: Path, keep: bool, home: Path | None, as_json: bool) -> None:
    """Run a fixed set of tasks against one generation in a scratch instance; print pass rate and tokens.

    The live instance's queue, repository and agent are never touched: a scratch instance runs
    generation N (main at gen/N, its proposals dropped unjudged, so it stays N) with the live
    model route. The report is kept in HOME/bench/ and shown by the console.
    """
    from supervisor.cli.task_bench import run_bench
    from supervisor.store.instance import Instance

    live = Instance.locate(home)
    report = run_bench(live, generation, set_file, keep=keep, progress=_say)
    emit(as_json, report, render(report))
    if not report.complete:
        raise click.exceptions.Exit(1)


def _say(message: str) -> None:
    echo(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", err=True)


def render(report: BenchReport) -> str:
    """The per-task lines, then the headline (last: the line an operator compares)."""
    lines = [f"generation {report.generation} ({report.commit[:12]}) on {report.set_file}:"]
    width = max((len(task.instance_id or str(task.task)) for task in report.tasks), default=4)
    for task in report.tasks:
        name = task.instance_id or str(task.task)
        extra = f", {task.regressions} regression(s)" if task.regressions else ""
        lines.append(f"  {name:<{width}}  {task.outcome:<14} {task.tokens:>10,} tokens{extra}  {task.title[:60]}")
    if report.scratch:
        lines.append(f"scratch instance kept in {report.scratch}")
    if not report.complete:
        lines.append("INCOMPLETE: the run stopped before every task had a verdict")
    rate = f"{report.passed}/{report.attempted} = {report.pass_rate:.0%}" if report.pass_rate is not None else "-"
    per_pass = f"{report.tokens_per_passed_task:,.0f}" if report.tokens_per_passed_task is not None else "-"
    infra = f" ({report.infrastructure} infrastructure, not counted)" if report.infrastructure else ""
    lines.append(f"pass rate {rate}{infra}; tokens per passed task {per_pass}")
    return "\n".join(lines)
