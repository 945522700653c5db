"""The acceptance stage: every scenario against one commit, in parallel within the gate's CPU cap.

`accept()` is the gate's hook: it runs after the candidate's pytest passes succeeded, and a stage
that fails (or cannot run) rejects. The reasons and failure ids it adds say only which kinds of
check failed, because they reach the agent's journal; the details (which scenario, what was
expected, what came back) go to the operator, in the pass's log tail and in `GateResult.acceptance`.
"""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sandbox.engine import Engine
from supervisor.base.errors import OuroborosError
from supervisor.base.git_ops import GEN_TAG_PREFIX, Git
from supervisor.gate.acceptance.library import scenario_set
from supervisor.gate.acceptance.models import (
    AcceptanceReport,
    AcceptanceSettings,
    CheckKind,
    Problem,
    Scenario,
    ScenarioOutcome,
    ScenarioResult,
)
from supervisor.gate.acceptance.scenario_run import RunPlan, run_scenario
from supervisor.gate.acceptance.workspace import export_candidate
from supervisor.gate.config import GateConfig
from supervisor.gate.history_layout import stand_in
from supervisor.store.gate_results import Failure, GateResult, PassResult
from supervisor.store.instance import CONFIG_NAME, AgentSettings, InstanceConfig

ENTRY_POINT = "agent/__main__.py"
DETAIL_CHARS = 3500


def instance_home(git_dir: Path) -> Path | None:
    """The instance a repository belongs to (HOME/repo.git beside HOME/ouroboros.toml), if any."""
    home = git_dir.parent
    return home if git_dir.name == "repo.git" and (home / CONFIG_NAME).is_file() else None


def settings_for(home: Path | None) -> AcceptanceSettings:
    return InstanceConfig.load(home / CONFIG_NAME).acceptance if home else AcceptanceSettings()


def agent_settings_for(home: Path | None) -> AgentSettings:
    """How the instance runs its agent (its [agent] table): acceptance runs it the same way."""
    return InstanceConfig.load(home / CONFIG_NAME).agent if home else AgentSettings()


def applies(git: Git, judged_by: str) -> bool:
    """Acceptance runs on agent repositories: those whose trusted side (the base) has an agent CLI."""
    return git.read_blob(judged_by, ENTRY_POINT) is not None


def stage_limits(
    cpus: float, memory_mb: int, scenarios: int, max_parallel: int, agent: AgentSettings | None = None
) -> tuple[int, AgentSettings]:
    """How many containers at once, and the settings each runs with: the live agent's own (its
    limits are part of what it could tell apart). As many run at once as fit in the gate's caps,
    at least one."""
    agent = agent or AgentSettings()
    fit = min(int(cpus // agent.cpus), memory_mb // agent.memory_mb)
    return max(1, min(max_parallel, scenarios, int(cpus), fit)), agent


def run_stage(
    git: Git,
    engine: Engine,
    image: str,
    instance: str,
    scratch: Path,
    commit: str,
    scenarios: list[Scenario],
    workers: int,
    agent: AgentSettings,
) -> AcceptanceReport:
    """Run every scenario on `commit`; fails closed (no scenarios is an error, not a pass)."""
    started = time.monotonic()
    # Named by nothing it holds: the container can read its mounts' host paths (/proc/self/mountinfo).
    folder = scratch / secrets.token_hex(6)
    try:
        try:
            code = export_candidate(git, commit, folder / "code")
            history = stand_in(git, folder / "history")
        except (OSError, OuroborosError) as exc:  # fail closed, as "could not run"
            problem = Problem(
                kind=CheckKind.INFRASTRUCTURE, detail=f"the candidate could not be laid out to run: {exc}"
            )
            failed = ScenarioResult(scenario="(export)", outcome=ScenarioOutcome.ERROR, problems=[problem])
            return AcceptanceReport(commit=commit, outcome=ScenarioOutcome.ERROR, scenarios=[failed])
        generation = len(git.refs(GEN_TAG_PREFIX))  # what the candidate would be if accepted
        plan = RunPlan(
            engine=engine,
            image=image,
            instance=instance,
            code=code,
            scratch=folder,
            agent=agent,
            history=history,
            generation=generation,
        )
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="acceptance") as pool:
            results = list(pool.map(lambda s: run_scenario(plan, s), scenarios))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return AcceptanceReport(
        commit=commit, outcome=_overall(results), scenarios=results, duration_s=round(time.monotonic() - started, 3)
    )


def _overall(results: list[ScenarioResult]) -> ScenarioOutcome:
    outcomes = {r.outcome for r in results}
    if not results or ScenarioOutcome.ERROR in outcomes:
        return ScenarioOutcome.ERROR
    return ScenarioOutcome.FAILED if ScenarioOutcome.FAILED in outcomes else ScenarioOutcome.PASSED


def operator_detail(report: AcceptanceReport) -> str:
    """Per scenario: outcome, timing and each problem in full; for the operator only."""
    lines = []
    for item in report.scenarios:
        lines.append(
            f"scenario {item.scenario}: {item.outcome.value} ({item.wall_s:.1f} s, {item.requests} requests, "
            f"exit {item.exit_code})"
        )
        lines += [f"  [{p.kind.value}] {p.detail[:400]}" for p in item.problems]
    return "\n".join(lines)[-DETAIL_CHARS:]


@dataclass(frozen=True)
class StageTools:
    """What the stage runs with, handed in by the gate's passes (GateRunner): its repository, engine, image and areas."""

    git: Git
    engine: Engine
    image: Callable[[], str]  # the agent image, found or built only when a stage runs
    instance: str
    work_area: Path  # where the candidate's agent writes: the capped worktree area under a supervisor


def accept(result: GateResult, config: GateConfig, tools: StageTools) -> None:
    """The gate's hook: run acceptance on a commit whose test passes succeeded; reject on failure."""
    git = tools.git
    if not applies(git, result.base or result.commit):
        return
    home = instance_home(git.git_dir)
    settings = settings_for(home)
    if not settings.enabled:
        return
    scenarios = scenario_set(home, settings)
    workers, agent = stage_limits(
        config.limits.cpus, config.limits.memory_mb, len(scenarios), settings.max_parallel, agent_settings_for(home)
    )
    image = config.image or tools.image()
    report = run_stage(
        git,
        tools.engine,
        image,
        tools.instance,
        tools.work_area,
        result.commit,
        scenarios,
        workers,
        agent,
    )
    ok = report.outcome is ScenarioOutcome.PASSED
    counts = {
        "scenarios": len(report.scenarios),
        "passed": sum(1 for s in report.scenarios if s.outcome is ScenarioOutcome.PASSED),
    }
    failures = [] if ok else [Failure(test_id="acceptance")]  # one bit for the agent; kinds: operator only
    result.acceptance = report
    result.passes.append(
        PassResult(
            name="acceptance",
            ok=ok,
            reason="" if ok else report.summary(),
            infrastructure=report.engine_failed(),
            duration_s=report.duration_s,
            counts=counts,
            failures=failures,
            log_tail=operator_detail(report),
        )
    )
    if not ok:
        result.passed = False
        result.needs_approval = False
        result.failures += failures
        result.reasons.append(report.summary())
