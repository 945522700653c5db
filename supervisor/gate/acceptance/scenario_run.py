"""One scenario, run for real: the candidate's own CLI in the live agent's container, network none.

The container is made by the one function that makes the live agent's (`agent_spec`): the same
mounts, environment keys, paths, user, limits and labels. Only what the folders hold differs (the
candidate's tree at /code, a fresh workspace with the scenario's journal and goals, the stage's
stand-in lineage) and what answers on the socket (the scripted model the supervisor serves). The
supervisor enforces the deadline itself (the engine kills and removes the container).
"""

from __future__ import annotations

import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sandbox import ContainerSpec
from sandbox.engine import Engine
from sandbox.errors import SandboxError
from supervisor.gate.acceptance.judge import Evidence, judge
from supervisor.gate.acceptance.model_server import SOCKET_NAME, AcceptanceServer
from supervisor.gate.acceptance.models import CheckKind, Problem, Scenario, ScenarioOutcome, ScenarioResult
from supervisor.gate.acceptance.workspace import MEMORY, lay_out, socket_folder
from supervisor.gate.agent_container import ROUTE_DIR, AgentFolders, agent_spec
from supervisor.route.server import UDS_BASE_URL, new_credential
from supervisor.store.instance import AgentSettings

ENTRY_POINT = ["python", "-m", "agent"]  # a scenario's `argv` are its arguments
OUTPUT_CAP = 400_000
STOP_GRACE_S = 10
TAIL_CHARS = 3000


class RunPlan(BaseModel):
    """What every scenario of one stage shares."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    engine: Engine
    image: str
    instance: str
    code: Path
    scratch: Path
    agent: AgentSettings = Field(default_factory=AgentSettings, description="The instance's [agent] settings.")
    history: Path | None = Field(default=None, description="The stand-in lineage folder (history_layout).")
    generation: int = 1


class _Run(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exit_code: int | None
    timed_out: bool
    output: str
    agent_s: float | None


def run_scenario(plan: RunPlan, scenario: Scenario) -> ScenarioResult:
    """Run and judge one scenario; infrastructure trouble is an `error` outcome, never a pass."""
    started = time.monotonic()
    # Named by nothing it holds: the container can read its mounts' host paths (/proc/self/mountinfo).
    root = plan.scratch / secrets.token_hex(4)
    sockets: Path | None = None
    try:
        sockets = socket_folder(plan.scratch)  # inside: a full work area is a verdict, never an escaping error
        root.mkdir(parents=True)
        workspace, outbox = lay_out(plan.code, root, scenario.goals, scenario.fixtures)
        with AcceptanceServer(scenario, sockets) as server:
            run = _execute(plan, scenario, scenario_spec(plan, scenario, workspace, outbox, sockets), server)
            results = dict(server.state.results)
            requests = server.state.count
        evidence = Evidence(results, workspace, outbox, run.exit_code, run.timed_out, run.output)
        problems = judge(scenario, evidence)
    except Exception as exc:  # noqa: BLE001 - fail closed, and say it was not the candidate's verdict
        problem = Problem(kind=CheckKind.INFRASTRUCTURE, detail=f"{type(exc).__name__}: {exc}")
        return ScenarioResult(
            scenario=scenario.name,
            outcome=ScenarioOutcome.ERROR,
            problems=[problem],
            # Only the engine's errors excuse. The work area is capped and, during the gate,
            # only the candidate writes in it (its scenario agents run side by side): the
            # set-up meeting it full is the candidate's doing. A full host disk is told apart
            # by the gatekeeper (statvfs of its state folder) before any verdict.
            engine_failed=isinstance(exc, SandboxError),
            wall_s=round(time.monotonic() - started, 3),
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
        if sockets is not None:
            shutil.rmtree(sockets, ignore_errors=True)
    return ScenarioResult(
        scenario=scenario.name,
        outcome=ScenarioOutcome.FAILED if problems else ScenarioOutcome.PASSED,
        problems=problems,
        exit_code=run.exit_code,
        requests=requests,
        wall_s=round(time.monotonic() - started, 3),
        agent_s=run.agent_s,
        output_tail=run.output[-TAIL_CHARS:],
    )


def _empty(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    return folder


def scenario_spec(plan: RunPlan, scenario: Scenario, workspace: Path, outbox: Path, sockets: Path) -> ContainerSpec:
    """The live agent's container (`agent_spec`), given this scenario's folders and the model's socket."""
    journal, goals = (workspace / memory for memory in MEMORY)
    folders = AgentFolders(
        code=plan.code,
        workspace=workspace,
        journal=journal,  # its own folder inside the workspace: the judge reads it there
        goals=goals,
        outbox=outbox,
        route_dir=sockets,
        history=plan.history,
        projects=_empty(workspace.parent / "projects"),  # as live: the folder of task work areas, none here
        task=_empty(workspace.parent / "task"),
    )
    route_env = {  # as the route gives the live agent (LLMRoute.agent_env), for the scripted model
        "ANTHROPIC_BASE_URL": UDS_BASE_URL,
        "ANTHROPIC_API_KEY": new_credential(),
        "OUROBOROS_LLM_SOCKET": f"{ROUTE_DIR}/{SOCKET_NAME}",
    }
    return agent_spec(
        image=plan.image,
        instance_id=plan.instance,
        run_id=f"acc-{secrets.token_hex(6)}",
        role="acceptance",
        settings=plan.agent,
        folders=folders,
        route_env=route_env,
        generation=plan.generation,
        command=[*ENTRY_POINT, *scenario.argv],
    )


def _execute(plan: RunPlan, scenario: Scenario, spec: ContainerSpec, server: AcceptanceServer) -> _Run:
    if not scenario.stop_after_requests:
        result = plan.engine.run(spec, deadline_s=scenario.deadline_s, output_cap=OUTPUT_CAP)
        # The engine's own time of the container (create to removal): a timer inside would show.
        timed = None if result.timed_out else round(result.duration_s, 3)
        return _Run(exit_code=result.exit_code, timed_out=result.timed_out, output=result.output, agent_s=timed)
    return _run_and_stop(plan, scenario, spec, server)


def _run_and_stop(plan: RunPlan, scenario: Scenario, spec: ContainerSpec, server: AcceptanceServer) -> _Run:
    """Start the agent, send SIGTERM once the model answered enough requests, wait for its exit."""
    container = plan.engine.start(spec)
    try:
        holder: dict[str, int | None] = {}
        waiter = threading.Thread(target=lambda: holder.update(code=container.wait(scenario.deadline_s)), daemon=True)
        waiter.start()
        deadline = time.monotonic() + scenario.deadline_s
        signalled = False
        while waiter.is_alive() and time.monotonic() < deadline:
            if not signalled and server.state.stop_requested.is_set():
                container.stop(STOP_GRACE_S)  # SIGTERM, then SIGKILL after the grace
                signalled = True
            waiter.join(0.05)
        timed_out = holder.get("code") is None
        if timed_out:
            container.stop(0)
        output = _capped_logs(container)
        return _Run(
            exit_code=None if timed_out else holder.get("code"), timed_out=timed_out, output=output, agent_s=None
        )
    finally:
        container.remove()


def _capped_logs(container: Any) -> str:
    chunks, size = [], 0
    for chunk in container.follow_logs():
        if size < OUTPUT_CAP:
            chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)[:OUTPUT_CAP].decode("utf-8", errors="replace")
