"""Acceptance cost: the stage's wall time on the default set, its overhead per scenario, and a whole gate.

Overhead of a scenario = its wall time in the stage (workspace, model server, container start, run,
removal, judging) minus its container's run time as the engine measured it (create to removal; a
timer inside the container would be something a candidate could tell a judged run by). So the
overhead here is the stage's own set-up and judging; container start and removal (about 0.2 s) are
counted in the container's time, not in it, unlike figures measured before that change. Then the demo runs, and the whole gate time of its accepted
proposal is printed (pytest passes + acceptance). The last line is the headline.
Usage: python bench/acceptance.py [--skip-demo]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sandbox.engine import DockerEngine  # noqa: E402
from sandbox.images import ensure_agent_image  # noqa: E402
from supervisor.base.git_ops import Git  # noqa: E402
from supervisor.gate.acceptance.library import default_scenarios  # noqa: E402
from supervisor.gate.acceptance.stage import run_stage, stage_limits  # noqa: E402
from supervisor.gate.config import GateConfig  # noqa: E402
from supervisor.store.instance_init import init_instance  # noqa: E402


def stage_on_packaged_agent(engine: DockerEngine, image: str, root: Path) -> list[float]:
    instance = init_instance(root / "home")
    git = Git(instance.repo)
    scenarios = default_scenarios()
    limits = GateConfig().limits  # what an instance's gate.toml gives the gate by default
    workers, share = stage_limits(limits.cpus, limits.memory_mb, len(scenarios), 4)
    report = run_stage(
        git,
        engine,
        image,
        instance.instance_id,
        root / "scratch",
        git.rev_parse("main") or "",
        scenarios,
        workers,
        share,
    )
    print(
        f"acceptance stage  {report.duration_s:6.2f} s on {len(scenarios)} default scenarios "
        f"({workers} at once, {share.cpus:g} CPU each): {report.outcome.value}"
    )
    overheads = []
    for item in report.scenarios:
        agent = f"{item.agent_s:5.2f} s" if item.agent_s is not None else "  n/a  "
        extra = f"{item.wall_s - item.agent_s:5.2f} s" if item.agent_s is not None else "  n/a (signalled, untimed)"
        print(f"  {item.scenario:<16} wall {item.wall_s:5.2f} s  agent {agent}  overhead {extra}")
        if item.agent_s is not None:
            overheads.append(item.wall_s - item.agent_s)
    engine.reconcile(instance=instance.instance_id)
    return overheads


def demo_gate_time(root: Path) -> None:
    from supervisor.cli.demo import run_demo
    from supervisor.gate.gatekeeper import Gatekeeper

    instance, verdicts, _tasks = run_demo(root / "demo", progress=lambda _message: None)
    accepted = [v for v in verdicts if v.state == "accepted"]
    if not accepted:
        print(f"demo: no accepted proposal ({[v.state for v in verdicts]})")
        return
    record = Gatekeeper(instance.repo).store.load(accepted[0].candidate)
    gate = record.gate
    if gate is None:
        print("demo: the accepted proposal has no gate result")
        return
    passes = ", ".join(f"{p.name} {p.duration_s:.1f} s" for p in gate.passes)
    print(f"demo accepted proposal: whole gate {gate.duration_s:.1f} s ({passes})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-demo", action="store_true", help="Only the stage on the default set.")
    skip_demo = parser.parse_args().skip_demo
    engine = DockerEngine.connect()
    image = ensure_agent_image(engine, progress=lambda _message: None)
    root = Path(tempfile.mkdtemp(prefix="acceptance-bench-"))
    try:
        overheads = stage_on_packaged_agent(engine, image, root)
        if not skip_demo:
            demo_gate_time(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"acceptance_overhead_s {statistics.median(overheads):.2f} (target < 1.0)")


if __name__ == "__main__":
    main()
