"""Median time to start, run `true` in, and remove a hardened container through sandbox/,
next to the same round trip through the plain `docker run --rm` CLI.

Usage: .venv/bin/python bench/container_overhead.py [--runs N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandbox import ContainerSpec  # noqa: E402
from sandbox.engine import DockerEngine  # noqa: E402
from sandbox.images import ensure_agent_image  # noqa: E402


def time_sandbox(engine: DockerEngine, image: str, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        spec = ContainerSpec(
            image=image, command=["true"], run_id=f"bench-{uuid.uuid4().hex[:8]}", role="bench", instance="bench"
        )
        started = time.perf_counter()
        result = engine.run(spec, deadline_s=60)
        times.append(time.perf_counter() - started)
        assert result.exit_code == 0, result.output
    return times


def time_cli(docker: str, image: str, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([docker, "run", "--rm", image, "true"], check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    docker = shutil.which("docker")
    if docker is None:
        sys.exit("the docker CLI is needed for the comparison; run scripts/ensure-docker.sh")
    engine = DockerEngine.connect()
    image = ensure_agent_image(engine)
    # Warm both paths once so neither pays for a cold cache.
    time_sandbox(engine, image, 1)
    time_cli(docker, image, 1)
    ours = statistics.median(time_sandbox(engine, image, args.runs))
    plain = statistics.median(time_cli(docker, image, args.runs))
    print(f"sandbox_hardened_run_ms {ours * 1000:.0f} (median of {args.runs})")
    print(f"docker_cli_run_rm_ms {plain * 1000:.0f} (median of {args.runs})")
    print(f"overhead_ratio {ours / plain:.2f} (target <= 1.2)")


if __name__ == "__main__":
    main()
