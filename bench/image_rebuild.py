"""How long `ensure_agent_image` takes when nothing changed: the check a start pays every time.

Usage: .venv/bin/python bench/image_rebuild.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandbox.engine import DockerEngine  # noqa: E402
from sandbox.images import ensure_agent_image  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    engine = DockerEngine.connect()
    started = time.perf_counter()
    tag = ensure_agent_image(engine)  # builds if this machine has never built it
    print(f"first call {time.perf_counter() - started:.2f} s -> {tag}")
    times = []
    for _ in range(args.runs):
        started = time.perf_counter()
        assert ensure_agent_image(engine) == tag
        times.append(time.perf_counter() - started)
    print(f"unchanged_rebuild_s {statistics.median(times):.3f} (target < 2)")


if __name__ == "__main__":
    main()
