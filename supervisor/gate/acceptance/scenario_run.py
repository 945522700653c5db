"""One scenario, run for real: the candidate's own CLI in a fresh hardened container, network none.

The container sees the candidate's `agent/` read-only at /code, a fresh workspace, an outbox, and
the folder holding the socket of the scripted model the supervisor serves: nothing else. The
supervisor enforces the deadline itself (the engine kills and removes the container).
"""

from __future__ import annotations

import re
import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from sandbox import ContainerSpec, Limits, Mount
from sandbox.engine import Engine
from sandbox.errors import SandboxError
from supervisor.gate.acceptance.judge import Evidence, judge
from supervisor.gate.acceptance.model_server import SOCKET_NAME, AcceptanceServer
from supervisor.gate.acceptance.models import CheckKind, Problem, Scenario, ScenarioOutcome, ScenarioResult
from supervisor.gate.acceptance.workspace import lay_out, socket_folder

CODE, WORKSPACE, OUTBOX, SOCKETS = "/code", "/workspace", "/ouroboros/outbox", "/run/ouroboros"
OUTPUT_CAP = 400_000
STOP_GRACE_S = 10
TAIL_CHARS = 3000
# Times the agent process itself, so the stage's own overhead can be measured (never judged).
TIMER = 'echo "==ACC-T0 $(date +%s.%N)"; "$@"; rc=$?; echo "==ACC-T1 $(date +%s.%N)"; exit $rc'
_T0, _T1 = re.compile(r"==ACC-T0 (\d+\.\d+)"), re.compile(r"==ACC-T1 (\d+\.\d+)")


class RunPlan(BaseModel):
    """What every scenario of one stage shares."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    engine: Engine
    image: str
    instance: str
    code: Path
    scratch: Path
    limits: Limits
    model: str = "claude-sonnet-5-5"
    generation: int = 1


class _Run(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exit_code: int | None
    timed_out: bool
    output: str


def run_scenario(plan: RunPlan, scenario: Scenario) -> ScenarioResult:
    """Run and judge one scenario; infrastructure trouble is an `error` outcome, never a pass."""
    started = time.monotonic()
    root = plan.scratch / f"acc-{scenario.name}-{secrets.token_hex(4)}"
    sockets: Path | None = None
    try:
        sockets = socket_folder(plan.scratch)  # inside: a full work area is a verdict, never an escaping error
        root.mkdir(parents=True)
        workspace, outbox = lay_out(plan.code, root, scenario.goals, scenario.fixtures)
        with AcceptanceServer(scenario, sockets) as server:
            run = _execute(plan, scenario, _spec(plan, scenario, workspace, outbox, sockets), server)
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
        agent_s=_agent_seconds(run.output),
        output_tail=run.output[-TAIL_CHARS:],
    )


def _spec(plan: RunPlan, scenario: Scenario, workspace: Path, outbox: Path, sockets: Path) -> ContainerSpec:
    agent = ["python", "-m", "agent", *scenario.argv]
    # A stop test signals the agent itself; the timer shell would not pass SIGTERM on.
    command = agent if scenario.stop_after_requests else ["sh", "-c", TIMER, "acceptance", *agent]
    env = {
        "PYTHONPATH": CODE,
        "PYTHONSAFEPATH": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": "/tmp",
        "OUROBOROS_WORKSPACE": WORKSPACE,
        "OUROBOROS_OUTBOX": OUTBOX,
        "OUROBOROS_MODEL": plan.model,
        "OUROBOROS_LLM_SOCKET": f"{SOCKETS}/{SOCKET_NAME}",
        "ANTHROPIC_BASE_URL": "http://llm-route",
        # Shaped as production's (supervisor/gate/agent_container.py, the route's credentials), so the
        # environment gives a candidate nothing to tell a judged run from a live one by.
        "ANTHROPIC_API_KEY": "ouroboros-run-" + secrets.token_urlsafe(32),
        "OUROBOROS_GENERATION": str(plan.generation),
    }
    return ContainerSpec(
        image=plan.image,
        command=command,
        run_id=f"acc-{secrets.token_hex(6)}",
        role="acceptance",
        instance=plan.instance,
        workdir=WORKSPACE,
        env=env,
        limits=plan.limits,
        mounts=[
            Mount(source=plan.code, target=CODE),
            Mount(source=workspace, target=WORKSPACE, read_only=False),
            Mount(source=outbox, target=OUTBOX, read_only=False),
            Mount(source=sockets, target=SOCKETS),
        ],
    )


def _execute(plan: RunPlan, scenario: Scenario, spec: ContainerSpec, server: AcceptanceServer) -> _Run:
    if not scenario.stop_after_requests:
        result = plan.engine.run(spec, deadline_s=scenario.deadline_s, output_cap=OUTPUT_CAP)
        return _Run(exit_code=result.exit_code, timed_out=result.timed_out, output=result.output)
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
        return _Run(exit_code=None if timed_out else holder.get("code"), timed_out=timed_out, output=output)
    finally:
        container.remove()


def _capped_logs(container: Any) -> str:
    chunks, size = [], 0
    for chunk in container.follow_logs():
        if size < OUTPUT_CAP:
            chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)[:OUTPUT_CAP].decode("utf-8", errors="replace")


def _agent_seconds(output: str) -> float | None:
    first, last = _T0.search(output), list(_T1.finditer(output))
    if not first or not last:
        return None
    return round(float(last[-1].group(1)) - float(first.group(1)), 3)
