"""What `supervisor task bench` reports, and its reports kept in the live instance (HOME/bench/*.json).

The figures come from the scratch instance's task verdicts (the supervisor's, never the agent's
word): per task its outcome and tokens, then the headline: pass rate (passed over attempted;
infrastructure verdicts are neither) and tokens per passed task (tokens of every attempted task over
the passed ones). The console shows the newest reports; the files are written by the supervisor
only, read back bounded and validated, and a file that does not validate is skipped.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TypedDict

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from supervisor.base.safe_fs import Bound, read_file

BENCH_DIR = "bench"
MAX_REPORT_BYTES = 8_000_000
ATTEMPTED = ("passed", "failed", "gave-up")


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BenchTask(_Out):
    """One task of the set, as judged in the scratch instance."""

    line: int = Field(description="Its line in the set file.")
    instance_id: str | None = Field(description="The set's own id (SWE-bench instance_id).")
    task: int = Field(description="The task's id in the scratch instance's queue.")
    project: str
    title: str
    outcome: str = Field(description="passed, failed, gave-up, infrastructure, cancelled, or unfinished.")
    tokens: int = Field(description="Tokens of its judged attempt (0 without a verdict).")
    reason: str
    regressions: int = Field(description="Tests that passed on the base and failed on the result.")


class BenchReport(_Out):
    """`supervisor task bench --json`, and each file in HOME/bench/."""

    generation: int
    commit: str = Field(description="The generation's commit (gen/N of the live repository).")
    set_file: str
    started_at: datetime
    finished_at: datetime
    tasks: list[BenchTask] = Field(description="In the set's line order.")
    attempted: int = Field(description="Tasks judged passed, failed or gave-up.")
    passed: int
    infrastructure: int = Field(description="Tasks whose tests could not run: never counted against the agent.")
    pass_rate: float | None = Field(description="passed / attempted; null when nothing was attempted.")
    tokens: int = Field(description="Tokens of every attempted task.")
    tokens_per_passed_task: float | None = Field(description="tokens / passed; null when nothing passed.")
    complete: bool = Field(description="Every task reached a final state (false: the run was stopped first).")
    scratch: str | None = Field(description="The scratch instance, when kept (--keep); null: removed.")


class Headline(TypedDict):
    attempted: int
    passed: int
    infrastructure: int
    pass_rate: float | None
    tokens: int
    tokens_per_passed_task: float | None


def headline(tasks: list[BenchTask]) -> Headline:
    """The report's totals over its tasks."""
    attempted = [task for task in tasks if task.outcome in ATTEMPTED]
    passed = sum(task.outcome == "passed" for task in tasks)
    tokens = sum(task.tokens for task in attempted)
    return {  # the same words as the scorecard's (docs/console.md)
        "attempted": len(attempted),
        "passed": passed,
        "infrastructure": sum(task.outcome == "infrastructure" for task in tasks),
        "pass_rate": passed / len(attempted) if attempted else None,
        "tokens": tokens,
        "tokens_per_passed_task": tokens / passed if passed else None,
    }


def save_report(home: Path, report: BenchReport) -> Path:
    """Write the report as HOME/bench/<finished, UTC>-gen<N>.json, atomically."""
    folder = home / BENCH_DIR
    folder.mkdir(parents=True, exist_ok=True)
    stamp = report.finished_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = folder / f"{stamp}-gen{report.generation}.json"
    temp = path.with_suffix(".tmp")
    temp.write_text(report.model_dump_json(indent=1), encoding="utf-8")
    os.replace(temp, path)
    return path


def latest_reports(home: Path, limit: int = 10) -> list[BenchReport]:
    """The newest reports, newest first; files that are no report (or not regular files) are skipped."""
    folder = home / BENCH_DIR
    try:
        names = sorted((name for name in os.listdir(folder) if name.endswith(".json")), reverse=True)
    except OSError:
        return []
    reports: list[BenchReport] = []
    for name in names:
        if len(reports) >= limit:
            break
        try:
            data = read_file(folder / name, MAX_REPORT_BYTES, Bound.REFUSE).data
            reports.append(BenchReport.model_validate_json(data))
        except (OSError, ValueError, ValidationError):
            continue
    return reports
