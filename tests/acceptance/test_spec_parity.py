"""The acceptance container is the live agent's container: one spec, compared field by field.

The live spec comes from the agent's start (`AgentProcess.start`, the path the supervisor takes);
the judged one from the acceptance stage (`stage_limits`, `run_stage`), both on one real instance
with its own [agent] settings. Every field of `ContainerSpec` must be equal, except the entries of
`ALLOWED`, each with its reason; a field added to `ContainerSpec` later fails here until someone
says how it may differ. No Docker: the fake engine records the specs it is given.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from sandbox import ContainerSpec, RunResult
from sandbox.fake import FakeEngine
from supervisor.base.git_ops import Git
from supervisor.gate.acceptance.models import Scenario
from supervisor.gate.acceptance.scenario_run import ENTRY_POINT
from supervisor.gate.acceptance.stage import agent_settings_for, run_stage, stage_limits
from supervisor.gate.agent_container import GENERATION_LABEL, live_command
from supervisor.gate.gatekeeper import Gatekeeper
from supervisor.loop import outbox
from supervisor.loop.agent_process import AgentProcess
from supervisor.loop.context import LoopContext, StopFlag
from supervisor.route import Ledger, LLMRoute, RouteConfig, Upstream
from supervisor.store.agent_log import RotatingLog
from supervisor.store.instance import Instance, InstanceConfig
from supervisor.store.instance_init import init_instance, package_dir
from supervisor.work.task_area import TaskArea

Check = Callable[[object, object], bool]
CREDENTIAL = re.compile(r"ouroboros-run-[A-Za-z0-9_-]{43}")


def _decimal(live: object, judged: object) -> bool:
    return all(isinstance(v, str) and re.fullmatch(r"-?[0-9]+", v) for v in (live, judged))


# (field, or field:key for env and labels) -> (why it may differ, what both sides must still be)
ALLOWED: dict[str, tuple[str, Check]] = {
    "run_id": (
        "every run has its own id; a label, which the container cannot read (no engine socket)",
        lambda live, judged: bool(live) and bool(judged),
    ),
    "role": (
        "a label only, invisible inside; operators and `supervisor containers` tell the runs apart by it",
        lambda live, judged: (live, judged) == ("agent", "acceptance"),
    ),
    "command": (
        "the scenario chooses the agent's subcommand (its task); same entry point, no wrapper around it",
        lambda live, judged: (
            isinstance(live, list)
            and isinstance(judged, list)
            and live[: len(ENTRY_POINT)] == ENTRY_POINT == judged[: len(ENTRY_POINT)]
        ),
    ),
    "mounts:source": (
        "the host folders: acceptance may change what they hold, never where they appear or how",
        lambda live, judged: True,
    ),
    "env:ANTHROPIC_API_KEY": (
        "the route's credential, fresh for every run; the same shape on both sides",
        lambda live, judged: all(isinstance(v, str) and CREDENTIAL.fullmatch(v) for v in (live, judged)),
    ),
    "env:OUROBOROS_GENERATION": (
        "live: the generation running; judged: the one the candidate would become",
        _decimal,
    ),
    f"labels:{GENERATION_LABEL}": ("as OUROBOROS_GENERATION", _decimal),
}


def differences(live: ContainerSpec, judged: ContainerSpec) -> list[str]:
    """Every difference between the two specs that ALLOWED does not excuse, one line each."""
    found: list[str] = []

    def compare(name: str, a: object, b: object) -> None:
        if a == b:
            return
        allowed = ALLOWED.get(name)
        if allowed is None or not allowed[1](a, b):
            found.append(f"{name}: live {a!r} != acceptance {b!r}")

    for field in ContainerSpec.model_fields:
        a, b = getattr(live, field), getattr(judged, field)
        if field == "mounts":
            compare("mounts", _by_target(a), _by_target(b))
            compare("mounts:source", [m.source for m in a], [m.source for m in b])
        elif field in ("env", "labels"):
            compare(f"{field} keys", sorted(a), sorted(b))
            for key in sorted(set(a) & set(b)):
                compare(f"{field}:{key}", a[key], b[key])
        else:
            compare(field, a, b)
    return found


def _by_target(mounts: list) -> dict[str, bool]:
    return {m.target: m.read_only for m in mounts}


@pytest.fixture
def instance(tmp_path: Path) -> Instance:
    """An instance whose [agent] settings are all other than the defaults (both sides must use them)."""
    made = init_instance(
        tmp_path / "home", package_dir("scripted_model") / "scenarios" / "idle_loop.json", model="claude-parity-1"
    )
    text = made.config_path.read_text().replace(
        "memory_mb = 1024\ncpus = 1.0\n", "memory_mb = 768\ncpus = 0.5\npids = 200\n"
    )
    made.config_path.write_text(text + "\n[acceptance]\nenabled = false\n")  # genesis gates on the fake engine
    Gatekeeper(made.repo, engine=FakeEngine(), image="img", instance=made.instance_id).genesis()
    return made


def live_spec(instance: Instance, tmp_path: Path) -> ContainerSpec:
    """The spec the supervisor's agent start makes, on the fake engine."""
    engine = FakeEngine()
    config = InstanceConfig.load(instance.config_path)
    gatekeeper = Gatekeeper(
        instance.repo, engine=engine, journal_root=instance.journal, image="img", instance=instance.instance_id
    )
    route_config = RouteConfig.model_validate({"upstream": {"base_url": "http://127.0.0.1:9"}})
    socket = instance.run_dir / "llm" / "llm.sock"
    socket.parent.mkdir(parents=True, exist_ok=True)  # the route's folder, as a started route leaves it
    outbox.prepare(instance.run_dir / "outbox")  # as the supervisor's start does
    ledger = Ledger.open(tmp_path / "ledger.jsonl")
    upstream = Upstream.from_config(route_config.upstream, environ={"ANTHROPIC_API_KEY": "k"})
    route = LLMRoute(route_config, ledger, upstream, lambda event: None, socket_path=socket)
    agent = AgentProcess(
        LoopContext(instance, config, engine, StopFlag()),
        image="img",
        gatekeeper=gatekeeper,
        log=RotatingLog(tmp_path / "agent.log"),
        on_exit=lambda *a: None,
        task_area=_task_area(instance),
    )
    main = gatekeeper.git.rev_parse("main")
    assert main is not None
    try:
        return agent.start(main, 0, route, "parity", None).spec
    finally:
        agent.stop()
        ledger.close()


def _task_area(instance: Instance) -> TaskArea:
    area = TaskArea(instance.task_work, instance.run_dir / "task")
    area.prepare()  # as the supervisor's start does
    return area


def judged_spec(instance: Instance, tmp_path: Path, argv: list[str]) -> ContainerSpec:
    """The spec the acceptance stage makes for one scenario, on the fake engine."""
    engine = FakeEngine(gate=lambda spec: RunResult(**_quiet_run()))
    scenario = Scenario(name="parity", argv=argv)
    workers, agent = stage_limits(1.0, 1024, 1, 4, agent_settings_for(instance.home))
    git = Git(instance.repo)
    run_stage(
        git,
        engine,
        "img",
        instance.instance_id,
        tmp_path / "scratch",
        git.rev_parse("main") or "",
        [scenario],
        workers,
        agent,
    )
    assert len(engine.calls) == 1
    return engine.calls[0]


def _quiet_run() -> dict[str, object]:
    return dict(
        exit_code=0, timed_out=False, output="", output_bytes=0, truncated=False, duration_s=0.1, container_id="c"
    )


@pytest.mark.parametrize("argv", [["run"], ["cycle", "--once"]])
def test_the_acceptance_container_differs_from_the_live_one_only_where_it_is_allowed(instance, tmp_path, argv):
    live = live_spec(instance, tmp_path)
    judged = judged_spec(instance, tmp_path, argv)
    assert differences(live, judged) == []
    # What the comparison rests on: the instance's own settings reached both, the lineage is mounted.
    assert live.limits.memory_mb == 768 and live.limits.pids == 200 and live.env["OUROBOROS_MODEL"] == "claude-parity-1"
    assert {"/history", "/workspace/agent/journal", "/workspace/agent/goals"} <= {m.target for m in judged.mounts}
    assert live.command == live_command(InstanceConfig.load(instance.config_path).agent)
    assert judged.command == [*ENTRY_POINT, *argv]


@pytest.mark.parametrize(
    "change",
    [
        {"env": {"OUROBOROS_ACCEPTANCE": "1"}},
        {"workdir": "/tmp"},
        {"network": "bridge"},
        {"tmpfs": ["/tmp", "/var/tmp"]},
        {"user": "10002:10002"},
        {"instance": "someone-else"},
        {"image": "other"},
        {"labels": {"io.ouroboros.judged": "1"}},
    ],
)
def test_the_comparison_fails_on_any_difference_it_was_not_told_about(instance, tmp_path, change):
    live = live_spec(instance, tmp_path)
    update = {k: ({**getattr(live, k), **v} if isinstance(v, dict) else v) for k, v in change.items()}
    assert differences(live, live.model_copy(update=update)) != []


def test_a_mount_moved_made_writable_or_missing_is_a_difference(instance, tmp_path):
    live = live_spec(instance, tmp_path)
    history = next(m for m in live.mounts if m.target == "/history")
    others = [m for m in live.mounts if m is not history]
    assert differences(live, live.model_copy(update={"mounts": others}))
    assert differences(
        live, live.model_copy(update={"mounts": [*others, history.model_copy(update={"read_only": False})]})
    )
    assert differences(live, live.model_copy(update={"limits": live.limits.model_copy(update={"pids": 128})}))
    assert differences(live, live.model_copy(update={"env": {**live.env, "ANTHROPIC_API_KEY": "sk-real"}}))


def test_the_stand_in_lineage_has_the_live_mirrors_layout(instance, tmp_path):
    from supervisor.gate.history_layout import stand_in
    from supervisor.loop import lineage_view

    live = lineage_view.build(instance)
    judged = stand_in(Git(instance.repo), tmp_path / "history")

    def layout(folder: Path) -> tuple[set[str], set[str], str, dict[str, str], str]:
        repo = Git(folder / "repo.git")
        return (
            {p.name for p in folder.iterdir()},
            {p.name for p in (folder / "repo.git").iterdir()},
            repo.out("symbolic-ref", "HEAD"),
            repo.refs("refs/heads/main", "refs/tags/gen/"),
            oct((folder / "SUMMARY.md").stat().st_mode & 0o777),
        )

    assert layout(judged) == layout(live)
    assert (judged / "gitconfig").read_text() == (live / "gitconfig").read_text()
    assert Git(judged / "repo.git").out("log", "--format=%H", "main") == Git(live / "repo.git").out(
        "log", "--format=%H", "main"
    )
    live_summary, judged_summary = ((f / "SUMMARY.md").read_text() for f in (live, judged))
    assert [line for line in judged_summary.splitlines() if line.startswith("#")] == [
        line for line in live_summary.splitlines() if line.startswith("#")
    ]
    assert "gen 0 (" in judged_summary
