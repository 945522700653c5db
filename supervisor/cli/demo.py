"""The built-in demo: the real system, a throw-away instance, the scripted model, two verdicts.

Generation 0 completes a goal with its tools, then in reflection gives itself a new tool with a
test and proposes it: the gate passes it, `main` moves to generation 1 and the agent restarts on
it. Generation 1 then proposes a change that breaks one of its own tests: the gate rejects it, the
verdict is journaled, and the agent stays on generation 1. No API key, no network.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from sandbox.engine import DockerEngine
from sandbox.images import ensure_agent_image
from supervisor.cli.log_lines import lines_to
from supervisor.gate.gatekeeper import Gatekeeper
from supervisor.loop.event_loop import Supervisor
from supervisor.store.instance import Instance
from supervisor.store.instance_init import init_instance, package_dir
from supervisor.store.verdicts import Verdict

# One scenario per agent run, played back to back by one scripted server.
SCENARIO_PARTS = ("demo.json", "breaking_change.json")
DEMO_MODEL = "claude-sonnet-5-5"


def write_demo_scenario(target: Path) -> Path:
    from scripted_model.scenario import Scenario, load_scenario

    folder = package_dir("scripted_model") / "scenarios"
    parts = [load_scenario(folder / name) for name in SCENARIO_PARTS]
    combined = Scenario(
        name="demo",
        description="generation 0: goal + new tool (accepted); generation 1: a breaking change (rejected)",
        steps=[step for part in parts for step in part.steps],
    )
    target.write_text(combined.model_dump_json(indent=1, exclude_none=True))
    return target


def two_verdicts(supervisor: Supervisor) -> bool:
    return len(supervisor.verdicts) >= 2


def run_demo(home: Path | None, progress: Callable[[str], None]) -> tuple[Instance, Sequence[Verdict]]:
    home = home or Path(tempfile.mkdtemp(prefix="ouroboros-demo-"))
    engine = DockerEngine.connect()
    progress("making sure the agent image exists (built offline the first time) ...")
    image = ensure_agent_image(engine, progress=progress)
    home.mkdir(parents=True, exist_ok=True)
    scenario = write_demo_scenario(Path(tempfile.mkdtemp(prefix="ouroboros-scenario-")) / "demo.json")
    progress(f"initialising a throw-away instance in {home}")
    # One cycle per agent run keeps the scripted conversation in step with the restarts.
    instance = init_instance(home, scenario, max_cycles=1, model=DEMO_MODEL)
    config = instance.config()
    progress("gating generation 0: the packaged agent's own tests, in a container ...")
    Gatekeeper(
        instance.repo, engine=engine, journal_root=instance.journal, image=image, instance=instance.instance_id
    ).genesis()
    supervisor = Supervisor(instance, engine, image, config, stop_when=two_verdicts)
    with lines_to(progress):
        supervisor.run()
    return instance, supervisor.verdicts


def lineage(instance: Instance) -> str:
    """`git log --graph` over generations, candidates and rejected proposals."""
    from supervisor.base.git_ops import Git

    return Git(instance.repo).out(
        "log",
        "--graph",
        "--format=%h %d %s",
        "--all",
        "--date-order",
        "--decorate-refs=refs/heads/",
        "--decorate-refs=refs/tags/",
        "--decorate-refs=refs/ouroboros/",
    )
