"""Fixtures for the project's tests of the agent: real workspaces, the real SDK, the scripted model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripted_model import ScriptedModelServer

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO / "scripted_model" / "scenarios"
_IGNORE = shutil.ignore_patterns("__pycache__", ".pytest_cache", "*.pyc")


def make_workspace(root: Path, goals: str = "# Active Goals\n") -> Path:
    """An agent repository like the supervisor's: agent/ and scripted_model/ copied, fresh memory."""
    root.mkdir(parents=True)
    shutil.copytree(REPO / "agent", root / "agent", ignore=_IGNORE)
    shutil.copytree(REPO / "scripted_model", root / "scripted_model", ignore=_IGNORE)
    for memory in ("journal", "goals"):
        shutil.rmtree(root / "agent" / memory)
        (root / "agent" / memory).mkdir()
    (root / "agent/goals/active.md").write_text(goals)
    return root


def agent_env(workspace: Path, url: str | None = None, code: Path = REPO, **extra: str) -> dict[str, str]:
    """Environment for `python -m agent`: code on PYTHONPATH (like /code), no inherited credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "OUROBOROS_"))}
    env.update(
        PYTHONPATH=str(code),
        OUROBOROS_WORKSPACE=str(workspace),
        OUROBOROS_OUTBOX=str(workspace.parent / "outbox"),
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONSAFEPATH="1",
    )  # as in the container: never import the cwd
    if url:
        env.update(ANTHROPIC_BASE_URL=url, ANTHROPIC_API_KEY="scripted")
    env.update(extra)
    return env


def run_agent(
    workspace: Path, *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], cwd=workspace, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return make_workspace(tmp_path / "ws")


@pytest.fixture
def serve() -> Iterator:
    """serve(scenario) -> a started ScriptedModelServer, stopped at teardown."""
    servers: list[ScriptedModelServer] = []

    def start(scenario, **kwargs) -> ScriptedModelServer:
        server = ScriptedModelServer(scenario, **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


DEMO_GOALS = (
    "# Active Goals\n\n## Inventory the TODO markers\n\nFind every TODO or FIXME comment in the repository's "
    "Python code and write them, with file and line, to reports/todo.md.\n\n## Later goal\n\nNot yet.\n"
)


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """One `ouroboros cycle --once` in a subprocess, through the real SDK, against demo.json.

    Returns (workspace, completed process, request bodies the scripted model received).
    """
    ws = make_workspace(tmp_path_factory.mktemp("demo") / "ws", DEMO_GOALS)
    (ws / "src").mkdir()
    (ws / "src/app.py").write_text("def main():\n    pass  # TODO: handle errors\n")
    with ScriptedModelServer(SCENARIOS / "demo.json") as server:
        result = run_agent(ws, "cycle", "--once", env=agent_env(ws, server.url))
        requests = list(server.requests)
    return ws, result, requests
