"""What only the embedded SQLite queue promises: its file, its schema version, no lock left behind,
and a kill -9 in the middle of writes leaving a consistent file."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from supervisor.store.tasks.models import TaskError, TaskState, TaskVerdict
from supervisor.store.tasks.sqlite_queue import SqliteTaskQueue, open_queue
from supervisor.store.tasks.sqlite_schema import SCHEMA_VERSION
from tests.tasks.queue_specs import new_task

ROOT = Path(__file__).resolve().parents[2]


def _write_lock_is_free(path: Path) -> bool:
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        other.close()


def test_the_file_is_wal_with_full_sync_and_a_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "tasks.sqlite3"
    queue = open_queue(path)
    queue.add(new_task())
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    plan = " ".join(
        str(row)
        for row in db.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM tasks WHERE state = 'queued' ORDER BY priority DESC, id LIMIT 1"
        )
    )
    assert "tasks_claim" in plan and "TEMP B-TREE" not in plan
    db.close()
    assert queue._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    queue.close()
    again = open_queue(path)  # opening an existing file keeps its tasks
    assert len(again.find()) == 1
    again.close()


def test_a_file_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tasks.sqlite3"
    open_queue(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(TaskError, match=f"schema {SCHEMA_VERSION + 1}, written by a newer release"):
        open_queue(path)
    assert _write_lock_is_free(path)


@pytest.mark.parametrize("content", [b"not a database at all\n" * 100, b"SQLite format 3\x00" + b"\xff" * 4000])
def test_a_damaged_file_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "tasks.sqlite3"
    path.write_bytes(content)
    with pytest.raises(TaskError, match="not a readable task queue.*move it aside"):
        open_queue(path)


def test_a_folder_in_the_way_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "tasks.sqlite3").mkdir()
    with pytest.raises(TaskError, match="tasks.sqlite3"):
        open_queue(tmp_path / "tasks.sqlite3")


def test_no_call_leaves_the_write_lock_held(tmp_path: Path) -> None:
    path = tmp_path / "tasks.sqlite3"
    queue = SqliteTaskQueue(path)
    task = queue.add(new_task(external_id="x"))
    assert _write_lock_is_free(path)
    with pytest.raises(TaskError):
        queue.add_many([new_task(external_id="y"), new_task(external_id="x")])  # fails half-way in
    assert _write_lock_is_free(path) and len(queue.find()) == 1
    claim = queue.claim("w", 60)
    assert claim is not None and _write_lock_is_free(path)
    with pytest.raises(TaskError):
        queue.finish(claim, TaskVerdict(outcome="passed", reason="r", base_commit="a" * 40))  # refused inside
    assert _write_lock_is_free(path) and queue.get(task.id).state is TaskState.RUNNING
    queue.close()


WRITER = """
import sys
from pathlib import Path
from supervisor.store.tasks.sqlite_queue import open_queue
from tests.tasks.queue_specs import new_task
queue = open_queue(Path(sys.argv[1]))
print("ready", flush=True)
n = 0
while True:
    queue.add_many(new_task(f"batch {n} task {i}", external_id=f"{sys.argv[2]}-{n}-{i}") for i in range(5))
    claim = queue.claim("w", 60)
    if claim is not None:
        queue.release(claim, "again")
    n += 1
"""


def test_a_kill_in_the_middle_of_writes_leaves_whole_batches(tmp_path: Path) -> None:
    path = tmp_path / "tasks.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for run in range(3):
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(run)], stdout=subprocess.PIPE, env=env, cwd=ROOT, text=True
        )
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        time.sleep(0.4)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        db.close()
        queue = open_queue(path)
        tasks = queue.find()
        assert tasks and len(tasks) % 5 == 0  # add_many is all or none, even under kill -9
        for task in tasks:
            attempts = queue.attempts(task.id)
            assert task.attempts == len(attempts) == task.fence
            if task.state is TaskState.RUNNING:
                assert attempts[-1].ended_at is None and task.worker == "w"
            else:
                assert task.state is TaskState.QUEUED and all(a.ended_at for a in attempts)
        queue.close()
