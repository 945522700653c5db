"""Gate overhead: wall time of `supervisor gate` on a sample repo minus the time its suite takes on the host.

Overhead = export of the commit from git objects + a fresh hardened container (start, run, remove)
+ reading the JUnit report back. Median of several runs each; the last line is the headline.
Usage: python bench/gate_overhead.py [--runs 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.gate.repo_factory import make_repo, sample_files  # noqa: E402

SLOW_TESTS = "".join(f"\n\ndef test_work_{i}():\n    assert sum(range(200_000)) > 0\n" for i in range(30))


def _timed(command: list[str], cwd: Path) -> float:
    started = time.monotonic()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    root = Path(tempfile.mkdtemp(prefix="gate-bench-"))
    files = {**sample_files(), "agent/tests/test_work.py": SLOW_TESTS}
    repo = make_repo(root / "r", bare=True, files=files)
    checkout = root / "checkout"
    subprocess.run(["git", "clone", "-q", str(repo), str(checkout)], check=True)
    host_cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "agent/tests"]
    gate_cmd = [sys.executable, "-m", "supervisor.cli", "gate", "main", "--repo", str(repo)]
    supervisor = [str(Path(sys.executable).with_name("supervisor")), "gate", "main", "--repo", str(repo)]
    gate_cmd = supervisor if Path(supervisor[0]).exists() else gate_cmd
    try:
        _timed(gate_cmd, root)  # warm-up: builds or finds the image, warms the page cache
        host = statistics.median(_timed(host_cmd, checkout) for _ in range(runs))
        gate = statistics.median(_timed(gate_cmd, root) for _ in range(runs))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"host suite T      {host * 1000:8.0f} ms (median of {runs})")
    print(f"supervisor gate   {gate * 1000:8.0f} ms (median of {runs}, CLI start-up included)")
    print(f"gate_overhead_ms {round((gate - host) * 1000)} (target < 1000)")


if __name__ == "__main__":
    main()
