"""The agent working on a task: tools rooted at the project, a task-result message when done.

Real parts: `python -m agent cycle --once` in a subprocess, the real SDK, the scripted model's
task_fix.json, a copy of the sample project as the work area.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from agent.task import AssignedTask, read_task
from tests.agent.conftest import REPO, SCENARIOS, agent_env, make_workspace, run_agent

SAMPLE = REPO / "examples" / "sample_project"


def _task_setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    ws = make_workspace(tmp_path / "ws")
    project = tmp_path / "projects" / "sample"
    shutil.copytree(SAMPLE, project)
    task_file = tmp_path / "task" / "task.json"
    task_file.parent.mkdir()
    task_file.write_text(
        json.dumps(
            {"id": 7, "project": "sample", "title": "Fix median", "body": "median is wrong", "path": str(project)}
        )
    )
    return ws, project, task_file


def test_a_task_is_worked_on_in_the_project_and_reported_done(tmp_path, serve):
    ws, project, task_file = _task_setup(tmp_path)
    source_before = (ws / "agent" / "loop.py").read_bytes()
    server = serve(SCENARIOS / "task_fix.json")
    result = run_agent(ws, "cycle", "--once", env=agent_env(ws, server.url, OUROBOROS_TASK_FILE=str(task_file)))
    # The scenario ends after the execute step; the reflection then finds no answer: not our concern here.
    fixed = (project / "stats" / "core.py").read_text()
    assert "(ordered[middle - 1] + ordered[middle]) / 2" in fixed, result.stderr[-2000:]
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=project,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(project), "PATH": "/usr/bin:/bin"},
    )
    assert "5 passed" in tests.stdout, tests.stdout
    messages = [json.loads(p.read_text()) for p in (ws.parent / "outbox").glob("task-result-*.json")]
    assert len(messages) == 1
    assert messages[0]["kind"] == "task-result" and messages[0]["version"] == 2 and messages[0]["task"] == 7
    assert "median" in messages[0]["summary"]
    assert (ws / "agent" / "loop.py").read_bytes() == source_before
    assert not (ws / "stats").exists()  # the tools worked in the project, not in the agent's tree
    plan_request = json.dumps(server.requests[0])
    assert "Task 7: Fix median" in plan_request and str(project) in plan_request


def test_a_garbled_or_missing_task_file_means_no_task(tmp_path):
    assert read_task(None) is None
    assert read_task(tmp_path / "absent.json") is None
    garbled = tmp_path / "task.json"
    garbled.write_bytes(b"\xff\xfe{not json")
    assert read_task(garbled) is None
    garbled.write_text(json.dumps({"id": 0, "project": "x", "title": "t", "path": "/p"}))
    assert read_task(garbled) is None  # ids start at 1
    garbled.write_text(json.dumps({"id": 3, "project": "x", "title": "t", "path": "/p"}))
    assert read_task(garbled) == AssignedTask(id=3, project="x", title="t", path="/p")
