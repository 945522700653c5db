"""What the delivery tests share: a real project mirror with a base and a result, task records, a
local server playing GitHub (or a git host asking for credentials), and a minimal in-memory queue."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from supervisor.store.tasks.models import Task, TaskError, TaskState, TaskVerdict, TestOutcomes

GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "HOME": "/nonexistent",
    "PATH": "/usr/bin:/bin",
}
BUGGY = "def add(a, b):\n    return a - b\n"
FIXED = "def add(a, b):\n    return a + b\n"


def git(cwd: Path, *args: str, input: bytes | None = None) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main", *args],
        cwd=cwd,
        env=GIT_ENV,
        capture_output=True,
        input=input,
        check=True,
    )
    return done.stdout.decode().strip()


@dataclass
class Project:
    """A bare mirror holding `base` (a bug) and `result` (its fix, plus a binary file); `other` is a
    second result from the same base (a retried task)."""

    mirror: Path
    work: Path
    base: str
    result: str
    other: str


def make_project(root: Path, mirror: Path | None = None) -> Project:
    work = root / "work"
    work.mkdir(parents=True)
    git(work, "init", "-q")
    (work / "calc.py").write_text(BUGGY)
    (work / "test_calc.py").write_text("from calc import add\n\ndef test_add():\n    assert add(2, 3) == 5\n")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "base")
    base = git(work, "rev-parse", "HEAD")
    (work / "calc.py").write_text(FIXED)
    (work / "logo.bin").write_bytes(bytes(range(256)) * 4)
    git(work, "add", "-A")
    git(work, "commit", "-qm", "result")
    result = git(work, "rev-parse", "HEAD")
    git(work, "checkout", "-q", "-b", "retry", base)
    (work / "calc.py").write_text("def add(a, b):\n    return b + a\n")
    git(work, "commit", "-qam", "another result")
    other = git(work, "rev-parse", "HEAD")
    mirror = mirror or root / "mirror.git"
    mirror.parent.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "--bare", str(mirror))
    git(
        work,
        "push",
        "-q",
        str(mirror),
        "main:refs/heads/main",
        f"{result}:refs/heads/task/1",
        "retry:refs/heads/task/2",
    )
    return Project(mirror, work, base, result, other)


def make_bare(path: Path) -> Path:
    git(path.parent, "init", "-q", "--bare", str(path))
    return path


def make_task(
    project: Project,
    *,
    task_id: int = 7,
    outcome: str | None = "passed",
    needs_review: bool = False,
    state: TaskState | None = None,
    result: str | None = "default",
    summary: str | None = "Fixed add: it subtracted.",
    title: str = "add() subtracts",
    fail_to_pass_passed: list[str] | None = None,
) -> Task:
    """A Task record as the queue would return it after a verdict (no queue involved)."""
    commit = project.result if result == "default" else result
    now = datetime.now(UTC)
    verdict = None
    if outcome is not None:
        verdict = TaskVerdict(
            outcome=outcome,  # type: ignore[arg-type]
            reason=f"judged {outcome}",
            base_commit=project.base,
            result_commit=commit,
            tests=TestOutcomes(
                fail_to_pass_passed=["test_calc.py::test_add"] if fail_to_pass_passed is None else fail_to_pass_passed,
                pass_to_pass_checked=3,
            ),
            needs_review=needs_review,
            review_reasons=["touches test_calc.py"] if needs_review else [],
            tokens=12345,
        )
    return Task(
        id=task_id,
        project="calc",
        title=title,
        base_commit=project.base,
        fail_to_pass=["test_calc.py::test_add"],
        state=state or (TaskState(outcome) if outcome else TaskState.QUEUED),
        created_at=now,
        updated_at=now,
        attempts=1,
        fence=1,
        result_commit=commit,
        result_branch="task/1",
        summary=summary,
        verdict=verdict,
    )


class MemoryQueue:
    """Just enough of the TaskQueue protocol for the commands that only read a task."""

    def __init__(self, tasks: list[Task]) -> None:
        self.tasks = {task.id: task for task in tasks}
        self.closed = False

    def get(self, task_id: int) -> Task:
        if task_id not in self.tasks:
            raise TaskError(f"no task {task_id}; `supervisor task list` shows them")
        return self.tasks[task_id]

    def close(self) -> None:
        self.closed = True


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Answer:
    status: int = 201
    body: Any = field(default_factory=lambda: {"number": 12, "html_url": "https://github.test/o/r/pull/12"})
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


class LocalServer:
    """A threading HTTP server on 127.0.0.1 (random port) that records every request and answers `answer`."""

    def __init__(self, answer: Answer | None = None) -> None:
        self.answer = answer or Answer()
        self.requests: list[Recorded] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body: Any = json.loads(raw) if raw else None
                except ValueError:
                    body = raw
                server.requests.append(Recorded(self.command, self.path, dict(self.headers.items()), body))
                answer = server.answer
                if answer.delay_s:
                    time.sleep(answer.delay_s)
                data = json.dumps(answer.body).encode() if answer.body is not None else b""
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _handle

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> LocalServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
