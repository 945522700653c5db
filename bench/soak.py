"""Soak: an agent proposing as fast as it can; does the supervisor slow down or grow?

The real supervisor loop (`Supervisor.run()`, in this process) with an agent that proposes at
once every run, so verdicts follow each other as fast as the supervisor can decide. At every
verdict the process's resident memory (VmRSS) is sampled. Reported:

- time per verdict (median), first vs last 100 verdicts (first vs last third with fewer than 300):
  verdict_time_ratio, target <= 1.1. The headline counts CPU time (the supervisor's own plus the
  git processes it runs), because on a shared machine wall time mostly measures the neighbours;
  the wall-clock ratio is printed on the line above it;
- RSS growth per verdict after warm-up (a least-squares slope over the second half), target 0.

--engine docker (default): the real engine, real gate containers (a cheap gate), the agent in its
container. --engine fake: the fake engine, so only the supervisor's own work is timed.

Usage: .venv/bin/python bench/soak.py [--seconds 600] [--engine docker|fake]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandbox.fake import FakeContainer, FakeEngine  # noqa: E402
from supervisor.gatekeeper import Gatekeeper  # noqa: E402
from supervisor.init_instance import init_instance, package_dir  # noqa: E402
from supervisor.runner import Supervisor  # noqa: E402
from tests.chaos.chaos_instance import chaos_instance  # noqa: E402
from tests.supervisor.fakes import fake_instance, write_proposal  # noqa: E402


# The docker variant of fake_agent: proposes at once, every run, rewriting one file.
SOAK_AGENT = r"""
import datetime, json, os, time, uuid
ws, out = os.environ["OUROBOROS_WORKSPACE"], os.environ["OUROBOROS_OUTBOX"]
pid = uuid.uuid4().hex
open(os.path.join(ws, "agent", "soak_note.txt"), "w").write(pid + "\n")
message = {"version": 1, "kind": "proposal", "id": pid, "why": "Soak.", "summary": "Soak " + pid[:8],
           "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat()}
open(os.path.join(out, pid + ".json.tmp"), "w").write(json.dumps(message))
os.rename(os.path.join(out, pid + ".json.tmp"), os.path.join(out, pid + ".json"))
while True:
    time.sleep(1)
"""


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fake_agent(container: FakeContainer) -> int:
    workspace = Path(container.mount("/workspace"))
    # One file rewritten each time: the tree stays the same size, so a slowdown would be the
    # supervisor's (a tree that grows makes every snapshot, export and checkout grow with it).
    (workspace / "agent" / "soak_note.txt").write_text(uuid.uuid4().hex + "\n")
    write_proposal(Path(container.mount("/ouroboros/outbox")))
    container.stopped.wait()
    return 137


def setup(engine_kind: str):
    home = Path(tempfile.mkdtemp(prefix="ouroboros-soak-")) / "home"
    if engine_kind == "fake":
        engine = FakeEngine(agent=fake_agent)
        # fake_instance turns held-out acceptance off: the fake engine runs no real agent to judge.
        return fake_instance(home, engine), engine, "fake-image"
    from sandbox.engine import DockerEngine
    from sandbox.images import ensure_agent_image

    engine = DockerEngine.connect()
    image = ensure_agent_image(engine)
    return chaos_instance(home, engine, image, agent=SOAK_AGENT), engine, image


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def soak(seconds: float, engine_kind: str) -> list[tuple[float, int, float]]:
    instance, engine, image = setup(engine_kind)
    samples: list[tuple[float, int, float]] = []
    seen = [0]
    deadline = time.monotonic() + seconds

    def sample(supervisor: Supervisor) -> bool:
        if supervisor.verdict_count != seen[0]:
            seen[0] = supervisor.verdict_count
            samples.append((time.monotonic(), rss_kb(), cpu_s()))
        return time.monotonic() > deadline

    try:
        Supervisor(instance, engine, image, stop_when=sample).run()
    finally:
        engine.reconcile(instance=instance.instance_id)
    return samples


def slope(xs: list[float], ys: list[float]) -> float:
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=False)) / spread if spread else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--engine", choices=("docker", "fake"), default="docker")
    args = parser.parse_args()
    samples = soak(args.seconds, args.engine)
    if len(samples) < 7:
        raise SystemExit(f"only {len(samples)} verdicts in {args.seconds:g} s: run longer")
    window = 100 if len(samples) >= 301 else (len(samples) - 1) // 3
    wall_first, wall_last = ratio_parts(samples, 0, window)
    cpu_first, cpu_last = ratio_parts(samples, 2, window)
    half = len(samples) // 2
    growth = slope([float(i) for i in range(half, len(samples))], [float(s[1]) for s in samples[half:]])
    print(f"verdicts {len(samples)} in {args.seconds:g} s ({args.engine} engine); median per verdict, first "
          f"{window} vs last {window}: wall {wall_first * 1000:.0f} -> {wall_last * 1000:.0f} ms "
          f"(ratio {wall_last / wall_first:.2f}), cpu {cpu_first * 1000:.0f} -> {cpu_last * 1000:.0f} ms")
    print(f"rss_kb first {samples[0][1]} last {samples[-1][1]}; rss_growth_kb_per_verdict {growth:.2f} "
          f"(target 0 after warm-up, second half)")
    print(f"verdict_time_ratio {cpu_last / cpu_first:.2f} (target <= 1.1)")


def ratio_parts(samples: list[tuple[float, int, float]], field: int, window: int) -> tuple[float, float]:
    """Median gap between consecutive verdicts in `field`, over the first and the last `window` gaps.

    Medians: a burst of load from other work on the machine should not pass for a slowdown."""
    gaps = [float(b[field]) - float(a[field]) for a, b in zip(samples, samples[1:], strict=False)]
    return statistics.median(gaps[:window]), statistics.median(gaps[-window:])


if __name__ == "__main__":
    os.environ.pop("ANTHROPIC_API_KEY", None)
    main()
