"""kill -9 the supervisor at random moments, start it again each time, then check every invariant.

Real Docker, real git, the scripted model behind the real route, and an agent that proposes every
cycle. The seed is printed (and can be set with CHAOS_SEED) so a failing run can be replayed.
"""

from __future__ import annotations

import os
import random
import re
import time

import pytest

from supervisor.git_ops import MAIN_REF
from supervisor.states import IN_FLIGHT
from tests.chaos.chaos_instance import chaos_instance, decisions_per_proposal, written_ids
from tests.system.conftest import SupervisorProcess, containers_of, keeper
from datetime import UTC

pytestmark = pytest.mark.docker
KILLS = int(os.environ.get("CHAOS_KILLS", "30"))


def test_kill_9_at_random_moments_then_restart_keeps_every_invariant(tmp_path, docker_engine, agent_image):
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1 << 32))
    print(f"chaos seed {seed} (replay with CHAOS_SEED={seed})")
    rng = random.Random(seed)
    instance = chaos_instance(tmp_path / "home", docker_engine, agent_image)
    gk = keeper(instance, docker_engine, agent_image)
    try:
        moments: dict[str, int] = {}
        for _ in range(KILLS):
            process = SupervisorProcess(instance)
            if rng.random() < 0.3:
                time.sleep(rng.uniform(0.2, 3.0))  # during start-up and recovery
            else:
                # Once the agent runs (start-up takes longer on a busy machine), at a random moment
                # of proposing, gating, merging or restarting.
                process.wait_for(r"agent running|gating proposal|resuming", timeout=120)
                time.sleep(rng.uniform(0.0, 4.0))
            assert process.process.poll() is None, "the supervisor exited by itself:\n" + _drain(process)
            process.kill9()
            moment = _last_step(process)
            moments[moment] = moments.get(moment, 0) + 1
        print(f"chaos: kills by the last step seen: {moments}")
        last = SupervisorProcess(instance)
        last.wait_for(r"agent running: generation", timeout=120)
        _wait_for_a_verdict_after(gk, time.time())
        assert last.terminate() == 0, _drain(last)
    finally:
        docker_engine.reconcile(instance=instance.instance_id)

    verify = gk.log.verify()
    assert verify.ok, verify
    main = gk.git.ref_value(MAIN_REF)
    assert main in set(gk.generations().values()), "main is not a gated generation"
    assert containers_of(docker_engine, instance) == []
    active = gk.store.active()
    assert not [r.id for r in active if r.state in IN_FLIGHT]
    live = {r.id for r in active}
    assert {p.name for p in gk.worktrees.iterdir()} <= live, "stale worktrees"
    queued = {p.name.removesuffix(".json") for p in (instance.run_dir / "outbox").glob("*.json")}
    decided = decisions_per_proposal(gk)
    written = written_ids(instance)
    assert len(written) >= KILLS // 4, "the agent hardly proposed: the test exercised little"
    wrong = {pid: decided.get(pid, []) for pid in written
             if len(decided.get(pid, [])) != (0 if pid in queued else 1)}
    assert not wrong, f"proposals without exactly one verdict (seed {seed}): {wrong}"
    kinds = [k for ks in decided.values() for k in ks]
    assert "accepted" in kinds
    print(f"chaos: {len(written)} proposals, {kinds.count('accepted')} accepted, "
          f"{kinds.count('proposal-dropped')} dropped, {kinds.count('rejected')} rejected: "
          f"{[r.reasons for r in gk.log.records() if r.kind == 'rejected']}")


def _wait_for_a_verdict_after(gk, since: float, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tail = gk.log.tail(1)
        if tail and tail[0].kind in ("accepted", "rejected") and tail[0].at > _iso(since):
            return
        time.sleep(0.5)
    raise AssertionError("no verdict after the last restart")


def _iso(epoch: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _last_step(process: SupervisorProcess) -> str:
    """What the killed supervisor was last doing, by its last progress line."""
    time.sleep(0.1)
    lines = _drain(process).splitlines()
    last = lines[-1] if lines else "starting"
    for step in ("gating proposal", "accepted", "rejected", "agent running", "recovered", "resuming"):
        if step in last:
            return step
    return " ".join(re.sub(r"^\[[^]]*\]\s*", "", last).split()[:3]) or "starting"


def _drain(process: SupervisorProcess) -> str:
    lines = []
    while not process.lines.empty():
        lines.append(process.lines.get_nowait())
    process.seen += lines
    return "\n".join(process.seen[-30:])
