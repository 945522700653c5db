"""What main's-tests-always costs: `Gatekeeper.submit` wall time of a code-only proposal (one pass,
main's tests alone) and of a proposal adding a feature and its test (two passes: main's tests
alone, then the candidate's suite), on the sample repository, in real containers.

Usage: .venv/bin/python bench/gate_passes.py [--runs 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sandbox.engine import DockerEngine  # noqa: E402
from sandbox.images import ensure_agent_image  # noqa: E402
from supervisor.gate.gatekeeper import Gatekeeper  # noqa: E402
from tests.gate.repo_factory import make_repo, proposal, write_tree  # noqa: E402


def submit_time(gatekeeper: Gatekeeper, files: dict[str, str], passes: int) -> float:
    candidate = gatekeeper.create_candidate()
    write_tree(Path(candidate.worktree), files)
    started = time.monotonic()
    verdict = gatekeeper.submit(candidate, proposal("bench"))
    took = time.monotonic() - started
    gate = gatekeeper.store.load(candidate.id).gate
    if verdict.state != "accepted" or gate is None or len(gate.passes) != passes:
        raise SystemExit(f"unexpected verdict {verdict.state} {verdict.reasons}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    engine = DockerEngine.connect()
    image = ensure_agent_image(engine, progress=lambda _m: None)
    root = Path(tempfile.mkdtemp(prefix="gate-passes-"))
    try:
        gatekeeper = Gatekeeper(make_repo(root / "r"), engine=engine, image=image, instance="bench")
        gatekeeper.genesis()
        one, two = [], []
        for n in range(runs):
            one.append(submit_time(gatekeeper, {f"agent/mod{n}.py": f"X = {n}\n"}, passes=1))
            test = f"from agent.feat{n} import f\n\n\ndef test_f{n}():\n    assert f() == {n}\n"
            two.append(
                submit_time(
                    gatekeeper,
                    {f"agent/feat{n}.py": f"def f():\n    return {n}\n", f"agent/tests/test_feat{n}.py": test},
                    passes=2,
                )
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"code-only proposal (main-tests pass)        {statistics.median(one):6.2f} s (median of {runs})")
    print(f"feature + test proposal (main-tests, candidate) {statistics.median(two):6.2f} s (median of {runs})")
    extra = statistics.median(two) - statistics.median(one)
    print(f"second pass adds {extra:.2f} s")
    # The second pass should cost one more container run and nothing else: about one pass's time.
    print(f"gate_second_pass_ratio {extra / statistics.median(one):.2f} (target < 1.2)")


if __name__ == "__main__":
    main()
