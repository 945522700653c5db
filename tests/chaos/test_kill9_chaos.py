"""kill -9 the supervisor at random moments, start it again each time, then check every invariant.

Real Docker, real git, the scripted model behind the real route, and an agent that asks the model
(real SDK, through the route's socket) and proposes every cycle. The seed is printed (and can be set
with CHAOS_SEED) so a failing run can be replayed.

The ledger invariant (tests/chaos/ledger_audit.py): every response the scripted model served (it
lists each one, with its usage, before sending it) is in the ledger with exactly that usage, or, if
a kill cut it between the answer and its record, is covered by a reservation of its own, open while
it was served and charged at its worst case at the next start; the ledger charges nothing else, and
at most one request per kill is charged at its worst case. Served money <= charged money, with the
difference only in requests a kill interrupted. A route that skips recording fails it
(tests/chaos/test_ledger_audit.py shows both ways it fails).

The task invariants: a few tasks on a small project are queued before the run and the agent works
on them (and says "done" again and again); at the end every task is final or resumable by this
instance, no attempt has two applied verdicts in the decision log, every verdict is logged, and
attempts never overlap.
"""

from __future__ import annotations

import os
import random
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from scripted_model.served import SERVED_LOG_ENV
from supervisor.base.git_ops import MAIN_REF
from supervisor.store.states import IN_FLIGHT
from tests.chaos.chaos_instance import (
    chaos_instance,
    decisions_per_proposal,
    ledger_audit,
    queue_chaos_tasks,
    task_problems,
    written_ids,
)
from tests.system.conftest import SupervisorProcess, containers_of, gatekeeper_of

pytestmark = pytest.mark.docker
KILLS = int(os.environ.get("CHAOS_KILLS", "30"))
TASKS = 4


def test_kill_9_at_random_moments_then_restart_keeps_every_invariant(tmp_path, docker_engine, agent_image, monkeypatch):
    served_log = tmp_path / "served.jsonl"  # the scripted model's own account, outside the instance
    monkeypatch.setenv(SERVED_LOG_ENV, str(served_log))
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1 << 32))
    print(f"chaos seed {seed} (replay with CHAOS_SEED={seed})")
    rng = random.Random(seed)
    instance = chaos_instance(tmp_path / "home", docker_engine, agent_image)
    gk = gatekeeper_of(instance, docker_engine, agent_image)
    queue_chaos_tasks(instance, tmp_path / "sample", TASKS)
    try:
        moments: dict[str, int] = {}
        for _ in range(KILLS):
            process = SupervisorProcess(instance)
            draw = rng.random()
            if draw < 0.3:
                time.sleep(rng.uniform(0.2, 3.0))  # during start-up and recovery
            elif draw < 0.5:
                # Just after the model served an answer, often between the answer and its ledger
                # record (a window of about 1 ms for a message, a few ms for a stream).
                process.wait_for(r"agent running", timeout=120)
                _wait_for_a_new_answer(served_log, timeout=4)
                time.sleep(rng.choice([0.0, rng.uniform(0.0, 0.02)]))
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
        torn = _tear_the_journal(instance)  # as a kill mid-append leaves it; the start must end the line
        last = SupervisorProcess(instance)
        last.wait_for(r"recovered: .*" + re.escape(torn.name) + r": its last line was torn", timeout=120)
        last.wait_for(r"agent running: generation", timeout=120)
        _wait_for_a_verdict_after(gk, time.time())
        assert last.terminate() == 0, _drain(last)
    finally:
        docker_engine.reconcile(instance=instance.instance_id)

    assert b"Candidate cut \xff\n" in torn.read_bytes(), "the torn note was not ended in place"
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
    wrong = {pid: decided.get(pid, []) for pid in written if len(decided.get(pid, [])) != (0 if pid in queued else 1)}
    assert not wrong, f"proposals without exactly one verdict (seed {seed}): {wrong}"
    audit = ledger_audit(instance, served_log, kills=KILLS)
    assert audit.ok, f"the ledger does not match what the model served (seed {seed}): {audit.problems}"
    assert audit.served >= KILLS // 4, "the agent hardly called the model: the test exercised little"
    print(
        f"chaos: {audit.served} answers served, {audit.recorded} recorded exactly, "
        f"{audit.covered_by_worst_case} cut by a kill and charged at their worst case, {audit.held} held"
    )
    problems, counts = task_problems(instance, gk.log)
    assert not problems, f"task invariants broken (seed {seed}): {problems}"
    print(f"chaos: tasks { ({str(state): n for state, n in counts.items() if n}) }")
    kinds = [k for ks in decided.values() for k in ks]
    assert "accepted" in kinds
    print(
        f"chaos: {len(written)} proposals, {kinds.count('accepted')} accepted, "
        f"{kinds.count('proposal-dropped')} dropped, {kinds.count('rejected')} rejected: "
        f"{[r.reasons for r in gk.log.records() if r.kind == 'rejected']}"
    )


def _wait_for_a_verdict_after(gk, since: float, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tail = gk.log.tail(20)  # task records may come after it
        if any(record.kind in ("accepted", "rejected") and record.at > _iso(since) for record in tail):
            return
        time.sleep(0.5)
    raise AssertionError("no verdict after the last restart")


def _tear_the_journal(instance) -> Path:
    """Append a note cut mid-line (and not UTF-8) to today's journal notes, as a kill mid-write would."""
    notes = instance.journal / datetime.now(UTC).strftime("%Y/%m/%d") / "notes.md"
    notes.parent.mkdir(parents=True, exist_ok=True)
    with open(notes, "ab") as handle:
        handle.write(b"\n## 2026-01-01T00:00:00Z accepted\n\nCandidate cut \xff")
    return notes


def _wait_for_a_new_answer(served_log, timeout: float) -> None:
    """Until the scripted model lists one more answer (the agent may be stopped for a gate: then time out)."""

    def size() -> int:
        return served_log.stat().st_size if served_log.exists() else 0

    before = size()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and size() == before:
        time.sleep(0.001)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _last_step(process: SupervisorProcess) -> str:
    """What the killed supervisor was last doing, by its last progress line."""
    time.sleep(0.1)
    lines = _drain(process).splitlines()
    last = lines[-1] if lines else "starting"
    for step in ("gating proposal", "accepted", "rejected", "agent running", "recovered", "resuming", "task"):
        if step in last:
            return step
    return " ".join(re.sub(r"^\[[^]]*\]\s*", "", last).split()[:3]) or "starting"


def _drain(process: SupervisorProcess) -> str:
    lines = []
    while not process.lines.empty():
        lines.append(process.lines.get_nowait())
    process.seen += lines
    return "\n".join(process.seen[-30:])
