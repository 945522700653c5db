"""Restart latency after a passing verdict, and the supervisor's own idle memory.

1. Several times: a fresh instance runs the demo's first proposal through the real supervisor;
   the figure is the time from the gate's passing verdict to the new generation's agent container
   running (stopping the old one included). Next to it, in the same run, the plain cost of
   starting an agent-shaped hardened container, which the target is relative to.
2. `supervisor start` as a real process with an idle agent: its resident memory (VmRSS).

Usage: .venv/bin/python bench/restart_latency.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandbox import ContainerSpec  # noqa: E402
from sandbox.engine import DockerEngine  # noqa: E402
from sandbox.images import ensure_agent_image  # noqa: E402
from supervisor.cli.demo import DEMO_MODEL, write_demo_scenario  # noqa: E402
from supervisor.gate.gatekeeper import Gatekeeper  # noqa: E402
from supervisor.loop.event_loop import Supervisor  # noqa: E402
from supervisor.store.instance_init import init_instance, package_dir  # noqa: E402


def new_instance(engine, image, scenario: Path, max_cycles: int | None):
    home = Path(tempfile.mkdtemp(prefix="ouroboros-bench-")) / "home"
    instance = init_instance(home, scenario, max_cycles=max_cycles, model=DEMO_MODEL)
    Gatekeeper(
        instance.repo, engine=engine, journal_root=instance.journal, image=image, instance=instance.instance_id
    ).genesis()
    return instance


def restart_latency(engine, image, runs: int) -> list[float]:
    scenario = write_demo_scenario(Path(tempfile.mkdtemp()) / "demo.json")
    figures = []
    for index in range(runs):
        instance = new_instance(engine, image, scenario, max_cycles=1)
        supervisor = Supervisor(instance, engine, image, stop_when=lambda s: bool(s.restart_latencies))
        supervisor.run()
        figures.append(supervisor.restart_latencies[0])
        print(
            f"run {index + 1}: verdict -> new agent running {supervisor.restart_latencies[0] * 1000:.0f} ms", flush=True
        )
    return figures


def container_start(engine, image, runs: int) -> list[float]:
    figures = []
    for _ in range(runs):
        spec = ContainerSpec(
            image=image, command=["sleep", "60"], run_id=f"bench-{uuid.uuid4().hex[:8]}", role="bench", instance="bench"
        )
        started = time.perf_counter()
        running = engine.start(spec)
        figures.append(time.perf_counter() - started)
        running.remove()
    return figures


def idle_rss_mb(engine, image, settle_s: float = 8) -> float:
    scenario = package_dir("scripted_model") / "scenarios" / "idle_loop.json"
    instance = new_instance(engine, image, scenario, max_cycles=None)
    process = subprocess.Popen(
        [sys.executable, "-m", "supervisor", "start", "--home", str(instance.home)], stderr=subprocess.PIPE, text=True
    )
    try:
        for line in process.stderr:
            if "agent running" in line:
                break
        time.sleep(settle_s)
        status = Path(f"/proc/{process.pid}/status").read_text()
        kb = int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])
    finally:
        process.terminate()
        process.wait(timeout=60)
    return kb / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    engine = DockerEngine.connect()
    image = ensure_agent_image(engine)
    latency = statistics.median(restart_latency(engine, image, args.runs))
    start = statistics.median(container_start(engine, image, args.runs))
    rss = idle_rss_mb(engine, image)
    print(f"container_start_ms {start * 1000:.0f} (median of {args.runs}, same run)")
    print(f"supervisor_idle_rss_mb {rss:.1f} (target < 80)")
    print(f"restart_latency_ms {latency * 1000:.0f} (target < {2000 + start * 1000:.0f} = 2000 + container start)")


if __name__ == "__main__":
    os.environ.pop("ANTHROPIC_API_KEY", None)
    main()
