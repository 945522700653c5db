"""Task verdict overhead: `TaskJudge.judge` wall time minus the project's own test time, base cached.

A generated small project (a package with a bug, 30 tests, a hidden test patch adding the failing
test) and the agent's fix committed from a work area; the judge runs once to warm the base cache
(and the image), then N times. Overhead = the judge's wall time minus the time its container run
took (`test_time_s`: start, pytest, remove): git work, the graft, the export, the review screen,
reading the report. Median of N; the last line is the headline.
Usage: python bench/task_verdict.py [--runs 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sandbox.engine import DockerEngine  # noqa: E402
from sandbox.images import ensure_agent_image  # noqa: E402
from supervisor.work.task_judge import TaskJudge  # noqa: E402
from supervisor.work.task_snapshot import commit_work_area  # noqa: E402
from tests.tasks.task_factory import (  # noqa: E402
    FIXED_OPS,
    hidden_patch,
    make_mirror,
    make_task,
    project,
    project_files,
    work_area,
)

MORE_TESTS = "".join(f"\n\ndef test_work_{i}():\n    assert sum(range(20_000)) > 0\n" for i in range(28))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    root = Path(tempfile.mkdtemp(prefix="task-verdict-bench-"))
    engine = DockerEngine.connect()
    try:
        image = ensure_agent_image(engine)
        files = {**project_files(), "tests/test_work.py": "from calc.ops import add" + MORE_TESTS}
        mirror, base = make_mirror(root, files)
        task = make_task(base, hidden_patch(root))
        area = work_area(mirror, base, root / "area", {"calc/ops.py": FIXED_OPS})
        made = commit_work_area(
            mirror, area, base_commit=base, branch="ouroboros/task-12-bench", message="fix", max_files=1000, max_mb=10
        )
        judge = TaskJudge(
            engine, scratch=root / "scratch", instance="bench", cache=root / "cache", agent_image=lambda: image
        )
        warm = judge.judge(mirror, project(), task, made.commit)  # runs the base once: cached from here on
        assert warm.outcome == "passed", warm.reason
        walls, tests = [], []
        for _ in range(runs):
            started = time.monotonic()
            verdict = judge.judge(mirror, project(), task, made.commit)
            walls.append(time.monotonic() - started)
            tests.append(verdict.test_time_s)
            assert verdict.outcome == "passed", verdict.reason
        overheads = [wall - test for wall, test in zip(walls, tests, strict=True)]
    finally:
        engine.reconcile(instance="bench")
        engine.close()
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"warm-up judge     {warm.duration_s * 1000:8.0f} ms (base and result run; test time {warm.test_time_s * 1000:.0f} ms)"
    )
    print(f"judge, base cached{statistics.median(walls) * 1000:8.0f} ms (median of {runs})")
    print(f"project test time {statistics.median(tests) * 1000:8.0f} ms (the container run, median of {runs})")
    print(f"task_verdict_overhead_ms {round(statistics.median(overheads) * 1000)} (target < 1000)")


if __name__ == "__main__":
    main()
