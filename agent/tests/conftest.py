"""Fixtures for the agent's own suite: offline, tree read-only, writes only under tmp paths."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from agent.config import AgentConfig
from agent.registry import ToolContext


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A minimal agent repository layout with an empty goals file."""
    root = tmp_path / "ws"
    (root / "agent" / "goals").mkdir(parents=True)
    (root / "agent" / "journal").mkdir()
    (root / "agent" / "goals" / "active.md").write_text("# Active Goals\n")
    return root


@pytest.fixture
def ctx(workspace: Path) -> ToolContext:
    return ToolContext(workspace=workspace, outbox=workspace.parent / "outbox", command_timeout_s=10, output_cap=2000)


@pytest.fixture
def config(workspace: Path) -> AgentConfig:
    return AgentConfig(workspace=workspace, outbox=workspace.parent / "outbox", model="claude-test", max_turns=6)


@pytest.fixture
def short_dir():
    """A short folder for Unix sockets (their paths are limited to about 100 characters)."""
    path = Path(tempfile.mkdtemp(prefix="ouro-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
