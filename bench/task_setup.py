"""Task set-up time: from the claim to the agent running on the task, big project vs a 10-file one.

"Agent running on a task" is the task file published (HOME/run/task/task.json): the agent's
container is already running and reads that file at the start of its next cycle, so the work is
the supervisor's: claim the queue's head (SQLite), make the work area at the task's base commit
(HOME/task-work/projects/NAME) and publish the task. Measured through the real parts: the
SqliteTaskQueue, a ProjectRegistry whose mirrors `create_mirror` fetched from generated sources,
the real TaskArea and `TaskFlow.assign` itself (the judge is built but never runs).

Two projects, generated with `git fast-import`: "big" (50,000 files in 500 folders, 20,000
commits) and "small" (10 files, 10 commits); a third, "deep" (10 files, 20,000 commits), shows
that history alone costs nothing. Each is timed

- cold: no work area was made ahead, so the claim exports the base commit (O(files));
- warm: the task was the queue's head while another task ran, so a tick of the task flow made its
  work area ahead (`TaskArea.prepare_ahead`) and the claim only renames it into place.

Runs are interleaved (a burst of load on the shared machine hits every side alike); medians.
task_setup_ratio = warm big / warm small: the set-up the agent waits for between two tasks of
a queue. Target <= 1.5.

Usage: .venv/bin/python bench/task_setup.py [--files 50000] [--commits 20000] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandbox.fake import FakeEngine  # noqa: E402
from supervisor.base.git_ops import safe_env  # noqa: E402
from supervisor.loop.context import LoopContext, StopFlag  # noqa: E402
from supervisor.loop.task_flow import Holding, TaskFlow  # noqa: E402
from supervisor.store.decision_log import DecisionLog  # noqa: E402
from supervisor.store.instance import Instance  # noqa: E402
from supervisor.store.instance_init import init_instance, package_dir  # noqa: E402
from supervisor.store.projects import ProjectConfig, ProjectRegistry  # noqa: E402
from supervisor.store.tasks.models import NewTask  # noqa: E402
from supervisor.store.tasks.sqlite_queue import open_queue  # noqa: E402
from supervisor.work.mirror import create_mirror  # noqa: E402
from supervisor.work.task_area import TaskArea  # noqa: E402
from supervisor.work.task_judge import TaskJudge  # noqa: E402

SCENARIO = package_dir("scripted_model") / "scenarios" / "idle_loop.json"
PER_FOLDER = 100
IDENT = "Bench <bench@example.invalid> 1700000000 +0000"


def _blob(text: str) -> bytes:
    data = text.encode()
    return b"data %d\n%s\n" % (len(data), data)


def _content(n: int, version: int) -> str:
    """A small source file (about 700 bytes), different per file and per version."""
    lines = [f"# module {n}, version {version}", f"def f_{n}(x):", f"    return x * {n} + {version}", ""]
    lines += [f"VALUE_{k} = {n * 31 + k}  # padding so the file has a realistic size" for k in range(10)]
    return "\n".join(lines) + "\n"


def _path(n: int) -> str:
    return f"pkg{n // PER_FOLDER:03d}/mod{n % PER_FOLDER:03d}.py"


def make_source(root: Path, files: int, commits: int) -> Path:
    """A bare repository: one commit adding `files` files, then commits each changing one file."""
    repo = root / "source.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(repo)], check=True, env=safe_env())
    stream = [b"commit refs/heads/main\n", f"committer {IDENT}\n".encode(), _blob("initial")]
    stream += [b"M 100644 inline %s\n%s" % (_path(n).encode(), _blob(_content(n, 0))) for n in range(files)]
    for c in range(1, commits):
        n = (c * 7919) % files
        stream += [b"commit refs/heads/main\n", f"committer {IDENT}\n".encode(), _blob(f"change {c}")]
        stream.append(b"M 100644 inline %s\n%s" % (_path(n).encode(), _blob(_content(n, c))))
    subprocess.run(
        ["git", "fast-import", "--quiet"], input=b"".join(stream), cwd=repo, check=True, env=safe_env(), timeout=1800
    )
    subprocess.run(["git", "gc", "-q"], cwd=repo, check=True, env=safe_env(), timeout=1800)
    return repo


class Bench:
    """One instance, its projects, and a task flow over the real queue, registry and work area."""

    def __init__(self, home: Path) -> None:
        self.instance: Instance = init_instance(home, SCENARIO, model="claude-sonnet-5-5")
        self.registry = ProjectRegistry(self.instance.projects)
        self.queue = open_queue(self.instance.tasks_db)
        self.area = TaskArea(self.instance.task_work, self.instance.run_dir / "task")
        engine = FakeEngine()
        ctx = LoopContext(self.instance, self.instance.config(), engine, StopFlag())
        self.flow = TaskFlow(
            ctx,
            queue=self.queue,
            registry=self.registry,
            area=self.area,
            judge=TaskJudge(
                engine,
                scratch=self.instance.state / "task-scratch",
                instance="bench",
                cache=self.instance.state / "task-baselines",
                agent_image=lambda: "fake",
            ),
            decisions=DecisionLog(self.instance.state / "decisions.jsonl"),
            note=lambda kind, body: None,
            tokens=lambda: 0,
            generation=lambda: None,
            holding=Holding(worker="t"),
        )
        self.flow.recover()
        self.bases: dict[str, str] = {}

    def add_project(self, name: str, source: Path) -> None:
        report = create_mirror(self.registry, ProjectConfig(name=name, source=str(source), max_files=200_000))
        assert report.head is not None
        self.bases[name] = report.head

    def queue_task(self, name: str) -> int:
        return self.queue.add(NewTask(project=name, title=f"a task on {name}", base_commit=self.bases[name])).id

    def timed_assign(self, task_id: int) -> float:
        started = time.perf_counter()
        self.flow.assign()
        elapsed = time.perf_counter() - started
        active = self.flow.active
        assert active is not None and active.claim.task_id == task_id, "the task was not started"
        assert (self.area.task_dir / "task.json").is_file(), "the task was not published"
        return elapsed

    def end(self, task_id: int) -> float:
        """The operator cancels the running task; the next tick clears its work area. Returns that tick's time."""
        self.queue.cancel(task_id, "bench")
        started = time.perf_counter()
        self.flow.tick()
        assert self.flow.active is None
        return time.perf_counter() - started

    def cold(self, name: str) -> float:
        task = self.queue_task(name)
        elapsed = self.timed_assign(task)
        self.end(task)
        return elapsed

    def warm(self, name: str, other: str) -> tuple[float, float, float]:
        """(set-up, the tick that prepared it, the tick that cleared it) while `other`'s task ran first."""
        first = self.queue_task(other)
        self.timed_assign(first)
        task = self.queue_task(name)
        started = time.perf_counter()
        self.flow.tick()  # the agent works on `first`: the head's work area is made ahead
        prepared = time.perf_counter() - started
        self.end(first)
        elapsed = self.timed_assign(task)
        return elapsed, prepared, self.end(task)


def median_of(runs: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=50_000)
    parser.add_argument("--commits", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="task-setup-bench-"))
    try:
        started = time.perf_counter()
        sources = {
            "big": make_source(root / "big", args.files, args.commits),
            "small": make_source(root / "small", 10, 10),
            "deep": make_source(root / "deep", 10, args.commits),
        }
        bench = Bench(root / "home")
        for name, source in sources.items():
            bench.add_project(name, source)
        print(f"made the projects in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        names = list(sources)
        cold: dict[str, list[float]] = {name: [] for name in names}
        warm: dict[str, list[tuple[float, float, float]]] = {name: [] for name in names}
        bench.cold("big")  # warm-up: page cache, imports
        for _ in range(args.runs):
            for name in names:
                cold[name].append(bench.cold(name))
                warm[name].append(bench.warm(name, other="small"))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:8.1f} ms"

    shape = {"big": f"{args.files} files, {args.commits} commits", "small": "10 files, 10 commits"}
    shape["deep"] = f"10 files, {args.commits} commits"
    for name in names:
        w = warm[name]
        print(
            f"{name:5} ({shape[name]}): cold {ms(cold[name])}, warm {ms([x[0] for x in w])}"
            f"  (made ahead in {ms([x[1] for x in w])}, cleared in {ms([x[2] for x in w])})"
        )
    history = statistics.median(x[0] for x in warm["deep"]) / statistics.median(x[0] for x in warm["small"])
    print(f"history: warm deep / warm small {history:.2f} (10 files each, {args.commits} commits vs 10)")
    ratio = statistics.median(x[0] for x in warm["big"]) / statistics.median(x[0] for x in warm["small"])
    print(f"task_setup_ratio {ratio:.2f} (target <= 1.5)")


if __name__ == "__main__":
    os.environ.pop("ANTHROPIC_API_KEY", None)
    main()
