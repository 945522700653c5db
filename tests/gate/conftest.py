"""Fixtures for the gate tests: real git repositories and, where marked, the real Docker engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.engine import Engine
from supervisor.gate.gatekeeper import Gatekeeper
from tests.gate.repo_factory import make_repo


@pytest.fixture
def bare_repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path, bare=True)


@pytest.fixture
def offline_gatekeeper(bare_repo: Path):
    """A gatekeeper for tests that must never reach a container (rejections before any test runs)."""
    engine = _NoEngine()
    yield Gatekeeper(bare_repo, engine=engine, image="never-used")
    assert engine.started == [], "a container was started although the verdict needed none"


@pytest.fixture
def gatekeeper_factory(docker_engine, agent_image, sandbox_instance, tmp_path: Path):
    """Builds gatekeepers over fresh sample repositories that gate in real containers."""

    def build(
        deadline: float = 60, bare: bool = True, files: dict[str, str] | None = None, name: str = "repo"
    ) -> Gatekeeper:
        repo = make_repo(tmp_path / name, bare=bare, deadline=deadline, files=files)
        return Gatekeeper(repo, engine=docker_engine, image=agent_image, instance=sandbox_instance)

    return build


class _NoEngine(Engine):
    """Stands in for Docker where a test proves no container is ever started (the gate would turn
    an exception into a rejection, so calls are recorded and checked after the test)."""

    def __init__(self) -> None:
        self.started: list[list[str]] = []

    def run(self, spec, deadline_s, output_cap=1_000_000):
        self.started.append(spec.command)
        raise RuntimeError("no container may run in this test")

    def start(self, spec, *, attach=False):
        self.started.append(spec.command)
        raise RuntimeError("no container may start in this test")

    def reconcile(self, instance=None, keep_run_ids=frozenset()):
        return []

    def ping(self):
        return True
