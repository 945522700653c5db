"""How one agent run is laid out in its container (see docs/architecture.md, "agent container")."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

from sandbox import ContainerSpec, Limits, Mount
from sandbox.engine import AgentContainer, Engine
from supervisor.base.git_ops import Git
from supervisor.store.agent_log import RotatingLog
from supervisor.store.instance import AgentSettings

CONTAINER_UID = 10001
CODE = "/code"
WORKSPACE = "/workspace"
OUTBOX = "/ouroboros/outbox"
ROUTE_DIR = "/run/ouroboros"


def agent_spec(
    *,
    image: str,
    instance_id: str,
    run_id: str,
    settings: AgentSettings,
    code_dir: Path,
    workspace: Path,
    journal: Path,
    goals: Path,
    outbox: Path,
    route_dir: Path,
    route_env: dict[str, str],
    generation: int,
) -> ContainerSpec:
    """The agent's container: code read-only, workspace and memory writable, the route its only way out."""
    env = {
        **route_env,
        "PYTHONPATH": CODE,
        # `python -m agent` must import the generation's code, never the editable copy in the cwd.
        "PYTHONSAFEPATH": "1",
        "OUROBOROS_WORKSPACE": WORKSPACE,
        "OUROBOROS_OUTBOX": OUTBOX,
        "OUROBOROS_GENERATION": str(generation),
    }
    if settings.model:
        env["OUROBOROS_MODEL"] = settings.model
    command = list(settings.command)
    if settings.max_cycles:
        command += ["--max-cycles", str(settings.max_cycles)]
    return ContainerSpec(
        image=image,
        command=command,
        run_id=run_id,
        role="agent",
        instance=instance_id,
        workdir=WORKSPACE,
        env=env,
        limits=Limits(memory_mb=settings.memory_mb, cpus=settings.cpus, pids=settings.pids),
        mounts=[
            Mount(source=code_dir, target=CODE),
            Mount(source=workspace, target=WORKSPACE, read_only=False),
            Mount(source=journal, target=f"{WORKSPACE}/agent/journal", read_only=False),
            Mount(source=goals, target=f"{WORKSPACE}/agent/goals", read_only=False),
            Mount(source=outbox, target=OUTBOX, read_only=False),
            Mount(source=route_dir, target=ROUTE_DIR),
        ],
        labels={"io.ouroboros.generation": str(generation)},
    )


def export_code(git: Git, root: Path, commit: str, running: str | None) -> Path:
    """A generation's code, exported once from git objects (never a worktree) for a read-only mount.

    Older exports go, except the one a running agent still has mounted; so do half-exported scratch
    folders (`.<sha>.<pid>`) of a supervisor that was killed.
    """
    target = root / commit
    if (target / ".complete").exists():
        return target
    scratch = root / f".{commit}.{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    git.export_tree(commit, scratch)
    (scratch / ".complete").touch()
    shutil.rmtree(target, ignore_errors=True)
    scratch.rename(target)
    for old in root.iterdir():
        if old.name not in (commit, running):
            shutil.rmtree(old, ignore_errors=True)
    return target


def give_to_agent(path: Path) -> None:
    """Make a host tree writable by the container's unprivileged user (and nobody else new)."""
    if os.geteuid() != 0:
        return
    os.chown(path, CONTAINER_UID, CONTAINER_UID)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), CONTAINER_UID, CONTAINER_UID)


class AgentRun:
    """A started agent container, its output pumped into the rotating log."""

    def __init__(self, engine: Engine, spec: ContainerSpec, log: RotatingLog) -> None:
        self.spec = spec
        self.container: AgentContainer = engine.start(spec, attach=True)
        self._pump = threading.Thread(target=self._copy_output, args=(log,), daemon=True)
        self._pump.start()

    @property
    def run_id(self) -> str:
        return self.spec.run_id

    def _copy_output(self, log: RotatingLog) -> None:
        # The attach stream, not the engine's log file: following that file loses everything after
        # the engine rotates it under a fast writer ("Error grabbing logs").
        for chunk in self.container.output():
            try:
                log.write(chunk)
            except OSError as exc:  # a full disk costs lines of the log, never the pump
                log.note_lost(len(chunk), exc)

    def stop(self, grace_s: float) -> None:
        self.container.stop(grace_s)
        self.container.remove()
        self._pump.join(timeout=2)
