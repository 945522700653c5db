"""The container engine and the agent image, both made ready on first use.

Commands that never run a container (`supervisor reject`, `rollback`, `status`) must never need
Docker: a Gatekeeper given no engine gets a `DockerOnDemand`, which connects when the gate first
runs a pass; an image not given is built (or found) the first time a pass needs it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from sandbox.engine import AgentContainer, DockerEngine, Engine
from sandbox.images import ensure_agent_image
from sandbox.spec import ContainerSpec, RunResult
from supervisor.base.errors import ConfigError


def _silent(_message: str) -> None:
    return None


class DockerOnDemand(Engine):
    """The Docker engine, connected the first time a container is run, started or reconciled."""

    def __init__(self) -> None:
        self._engine: DockerEngine | None = None
        self._lock = threading.Lock()

    def docker(self) -> DockerEngine:
        """The connected engine; raises EngineUnavailableError (or EngineAccessError) if none answers."""
        with self._lock:
            if self._engine is None:
                self._engine = DockerEngine.connect()
            return self._engine

    def run(self, spec: ContainerSpec, deadline_s: float, output_cap: int = 1_000_000) -> RunResult:
        return self.docker().run(spec, deadline_s, output_cap)

    def start(self, spec: ContainerSpec, *, attach: bool = False) -> AgentContainer:
        return self.docker().start(spec, attach=attach)

    def reconcile(
        self, instance: str | None = None, keep_run_ids: frozenset[str] | set[str] = frozenset()
    ) -> list[str]:
        return self.docker().reconcile(instance, keep_run_ids)

    def ping(self) -> bool:
        """Never connected: no container ran, so the engine failed nothing (and is not asked now)."""
        engine = self._engine
        return True if engine is None else engine.ping()


def docker_of(engine: Engine) -> DockerEngine:
    """The Docker engine behind `engine`, connected; only a Docker engine can build images."""
    if isinstance(engine, DockerOnDemand):
        return engine.docker()
    if isinstance(engine, DockerEngine):
        return engine
    raise ConfigError("no agent image was given and this engine cannot build one; give the gate an image")


def build_agent_image(engine: Engine, progress: Callable[[str], None] = _silent) -> str:
    """The agent image's tag, built first if this Docker engine does not have it yet."""
    return ensure_agent_image(docker_of(engine), progress=progress)
