"""Does a long history slow the supervisor down? Time per decision and start-up time, 10 vs 10,000.

Two instances, identical but for their past: one with 10, one with 10,000 finished candidates
(proposal ids indexed, a decision record each, a rejected ref each, a generation tag for every
tenth, refs packed as the supervisor's periodic maintenance leaves them, then the retention pass a
rejection runs: rejected refs beyond the policy's newest 50 dropped, finished records beyond the
newest 5,000 archived). On each:

- start-up: `Supervisor.run()` from the lock to the agent running (recover, genesis check, route);
- decision: create a candidate, edit it, submit a proposal, up to the verdict, plus the runner's
  lookup of the proposal id; the container engine is the fake one, so container runs count zero.

history_ratio is the larger of the two ratios 10,000 / 10 (medians). Target <= 1.2.

Usage: .venv/bin/python bench/history_scale.py [--past 10000] [--decisions 15]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandbox.fake import FakeEngine  # noqa: E402
from supervisor.gate.gatekeeper import Gatekeeper  # noqa: E402
from supervisor.gate.retention import enforce  # noqa: E402
from supervisor.loop.event_loop import Supervisor  # noqa: E402
from supervisor.store.candidates import CandidateRecord  # noqa: E402
from supervisor.store.decision_log import GENESIS, record_hash  # noqa: E402
from supervisor.store.instance import Instance  # noqa: E402
from supervisor.store.instance_init import init_instance, package_dir  # noqa: E402
from supervisor.store.protocol import Proposal  # noqa: E402
from supervisor.store.states import CandidateState  # noqa: E402

SCENARIO = package_dir("scripted_model") / "scenarios" / "idle_loop.json"


def proposal() -> Proposal:
    return Proposal(
        version=1,
        kind="proposal",
        id=uuid.uuid4().hex,
        summary="Add a note",
        why="Benchmark.",
        created_at=datetime.now(UTC),
    )


def gatekeeper_of(instance: Instance, engine: FakeEngine) -> Gatekeeper:
    return Gatekeeper(
        instance.repo, engine=engine, journal_root=instance.journal, image="fake", instance=instance.instance_id
    )


def build(past: int, engine: FakeEngine) -> Instance:
    home = Path(tempfile.mkdtemp(prefix="ouroboros-history-")) / "home"
    instance = init_instance(home, SCENARIO, model="claude-sonnet-5-5")
    # The fake engine runs no real agent, so held-out acceptance (a real-engine stage) is off, as in
    # tests/supervisor/fakes.py: this measures the supervisor's own bookkeeping.
    instance.config_path.write_text(instance.config_path.read_text() + "\n[acceptance]\nenabled = false\n")
    gk = gatekeeper_of(instance, engine)
    gk.genesis()
    template = decide(gk)  # one real finished candidate, copied `past` times
    write_past(gk, template, past)
    gk.maintain()
    # As retention leaves a real instance: after each rejection the supervisor keeps the newest
    # rejected refs the policy allows (default 50) and the newest 5,000 finished records as files.
    enforce(gk.git, lambda: gk.config().retention, gk.state_dir)
    return instance


def decide(gk: Gatekeeper) -> CandidateRecord:
    record = gk.create_candidate()
    Path(record.worktree, "agent", f"note_{uuid.uuid4().hex[:8]}.txt").write_text("a note\n")
    verdict = gk.submit(record, proposal())
    gk.store.candidate_for(uuid.uuid4().hex)  # the runner's look-up of a new proposal id
    return gk.store.load(verdict.candidate)


def write_past(gk: Gatekeeper, template: CandidateRecord, past: int) -> None:
    last = json.loads(gk.log.path.read_bytes().splitlines()[-1])
    seq, prev = last["seq"], last["hash"]
    lines, refs = [], []
    for n in range(past):
        candidate_id = f"900-{n + 1}"
        pid = uuid.uuid4().hex
        state = CandidateState.ACCEPTED if n % 10 == 0 else CandidateState.REJECTED
        record = template.model_copy(
            update={"id": candidate_id, "state": state, "proposal": template.proposal.model_copy(update={"id": pid})}
        )
        (gk.store.done / f"{candidate_id}.json").write_text(record.model_dump_json(indent=1))
        gk.store.index_proposal(pid, candidate_id)
        seq += 1
        entry = {
            "seq": seq,
            "at": datetime.now(UTC).isoformat(),
            "kind": state.value,
            "candidate": candidate_id,
            "commit": template.commit,
            "main_before": None,
            "main_after": None,
            "generation": None,
            "reasons": ["past"],
            "details": {"summary": "past", "proposal": pid},
            "prev": prev,
        }
        entry["hash"] = prev = record_hash(entry)
        lines.append(json.dumps(entry, sort_keys=True, ensure_ascii=False))
        refs.append(f"create refs/ouroboros/rejected/{candidate_id} {template.commit}")
        if n % 10 == 0:
            refs.append(f"create refs/tags/gen/{1000 + n} {template.commit}")
    with open(gk.log.path, "a") as handle:
        handle.write("\n".join(lines) + "\n")
    gk.git.run("update-ref", "--stdin", input=("\n".join(refs) + "\n").encode())
    assert gk.log.verify().ok and GENESIS


def startup_s(instance: Instance, engine: FakeEngine) -> float:
    started = time.perf_counter()
    Supervisor(instance, engine, "fake", stop_when=lambda s: s.agent is not None).run()
    return time.perf_counter() - started


def decision_s(instance: Instance, engine: FakeEngine) -> float:
    gk = gatekeeper_of(instance, engine)
    started = time.perf_counter()
    decide(gk)
    return time.perf_counter() - started


def measure(instance: Instance, engine: FakeEngine, decisions: int) -> tuple[float, float]:
    startup_s(instance, engine)  # warm-up (page cache, imports)
    starts = [startup_s(instance, engine) for _ in range(5)]
    times = [decision_s(instance, engine) for _ in range(decisions)]
    return statistics.median(starts), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--past", type=int, default=10_000)
    parser.add_argument("--decisions", type=int, default=15)
    args = parser.parse_args()
    engine = FakeEngine()
    small, large = build(10, engine), build(args.past, engine)
    # Interleaved, so a burst of load on a shared machine hits both sides alike.
    figures = {"small": [], "large": []}
    for _ in range(3):
        figures["small"].append(measure(small, engine, args.decisions))
        figures["large"].append(measure(large, engine, args.decisions))
    s_start, s_decide = (statistics.median(f[i] for f in figures["small"]) for i in (0, 1))
    l_start, l_decide = (statistics.median(f[i] for f in figures["large"]) for i in (0, 1))
    print(
        f"startup_ms 10 past: {s_start * 1000:.0f}, {args.past} past: {l_start * 1000:.0f} "
        f"(ratio {l_start / s_start:.2f})"
    )
    print(
        f"decision_ms 10 past: {s_decide * 1000:.0f}, {args.past} past: {l_decide * 1000:.0f} "
        f"(ratio {l_decide / s_decide:.2f})"
    )
    print(f"history_ratio {max(l_start / s_start, l_decide / s_decide):.2f} (target <= 1.2)")


if __name__ == "__main__":
    os.environ.pop("ANTHROPIC_API_KEY", None)
    main()
