"""How one agent run is laid out in its container (see docs/architecture.md, "agent container").

`agent_spec` is the only maker of the agent's container: the live agent (supervisor/loop/
agent_process.py) and every acceptance scenario (supervisor/gate/acceptance/scenario_run.py) call it.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sandbox import ContainerSpec, Limits, Mount
from sandbox.engine import AgentContainer, Engine
from supervisor.base.git_ops import Git
from supervisor.gate import history_layout
from supervisor.store.agent_log import RotatingLog
from supervisor.store.instance import AgentSettings

CONTAINER_UID = 10001
CODE = "/code"
WORKSPACE = "/workspace"
JOURNAL = f"{WORKSPACE}/agent/journal"
GOALS = f"{WORKSPACE}/agent/goals"
OUTBOX = "/ouroboros/outbox"
PROJECTS = "/projects"
TASK = "/ouroboros/task"
ROUTE_DIR = "/run/ouroboros"
GENERATION_LABEL = "io.ouroboros.generation"
COMPLETE = ".complete"  # marks a finished export; it is part of what the container sees at /code


class AgentFolders(BaseModel):
    """The host side of every mount of the agent's container; the container side is fixed here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: Path = Field(description="The commit's tree, exported from git objects; read-only at /code.")
    workspace: Path = Field(description="The candidate's workspace; writable at /workspace.")
    journal: Path = Field(description="The journal; writable at /workspace/agent/journal.")
    goals: Path = Field(description="The goals; writable at /workspace/agent/goals.")
    outbox: Path = Field(description="Where proposals go; writable at /ouroboros/outbox.")
    route_dir: Path = Field(description="The folder of the model's socket; read-only at /run/ouroboros.")
    history: Path | None = Field(description="The lineage folder, read-only at /history; None: not built.")
    projects: Path = Field(description="The task work areas' folder (root's); /projects, the task's area writable.")
    task: Path = Field(description="The folder of the task the agent is given; read-only at /ouroboros/task.")


def live_command(settings: AgentSettings) -> list[str]:
    """The agent's entry point as the instance runs it."""
    command = list(settings.command)
    if settings.max_cycles:
        command += ["--max-cycles", str(settings.max_cycles)]
    return command


def agent_spec(
    *,
    image: str,
    instance_id: str,
    run_id: str,
    role: Literal["agent", "acceptance"],
    settings: AgentSettings,
    folders: AgentFolders,
    route_env: dict[str, str],
    generation: int,
    command: list[str],
) -> ContainerSpec:
    """The agent's container, live and judged alike: code read-only, workspace and memory writable,
    its lineage read-only, the model's socket its only way out.

    The one place it is made: a judged run differs from a live one only in what answers on the
    socket and what the folders hold (tests/acceptance/test_spec_parity.py holds it to that).
    """
    env = {
        **route_env,
        "PYTHONPATH": CODE,
        # `python -m agent` must import the generation's code, never the editable copy in the cwd.
        "PYTHONSAFEPATH": "1",
        "OUROBOROS_WORKSPACE": WORKSPACE,
        "OUROBOROS_OUTBOX": OUTBOX,
        "OUROBOROS_GENERATION": str(generation),
        "OUROBOROS_TASK_FILE": f"{TASK}/task.json",
    }
    if settings.model:
        env["OUROBOROS_MODEL"] = settings.model
    mounts = [
        Mount(source=folders.code, target=CODE),
        Mount(source=folders.workspace, target=WORKSPACE, read_only=False),
        Mount(source=folders.journal, target=JOURNAL, read_only=False),
        Mount(source=folders.goals, target=GOALS, read_only=False),
        Mount(source=folders.outbox, target=OUTBOX, read_only=False),
        Mount(source=folders.route_dir, target=ROUTE_DIR),
        Mount(source=folders.projects, target=PROJECTS, read_only=False),
        Mount(source=folders.task, target=TASK),
    ]
    if folders.history is not None:
        mounts.append(Mount(source=folders.history, target=history_layout.TARGET))
        env.update(history_layout.environment())
    return ContainerSpec(
        image=image,
        command=command,
        run_id=run_id,
        role=role,
        instance=instance_id,
        workdir=WORKSPACE,
        env=env,
        limits=Limits(memory_mb=settings.memory_mb, cpus=settings.cpus, pids=settings.pids),
        mounts=mounts,
        labels={GENERATION_LABEL: str(generation)},
    )


def export_code(git: Git, root: Path, commit: str, running: str | None) -> Path:
    """A generation's code, exported once from git objects (never a worktree) for a read-only mount.

    Older exports go, except the one a running agent still has mounted; so do half-exported scratch
    folders (`.<sha>.<pid>`) of a supervisor that was killed.
    """
    target = root / commit
    if (target / COMPLETE).exists():
        return target
    scratch = root / f".{commit}.{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    git.export_tree(commit, scratch)
    (scratch / COMPLETE).touch()
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
