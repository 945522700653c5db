"""Console main page render time and scorecard update time per event, 10 vs 10,000 generations.

Each synthetic instance has N generations, and per generation one rejected and one accepted
proposal (so 2N judged candidates), one ledger entry per proposal, spread over N minutes. The
records are written with the real formats (a valid hash chain, real ledger entries) and consumed
once by the scorecard store. Then, per measured event, one more verdict record and one more ledger
entry are appended and `update()` is timed; the main page is timed as the server serves it
(refresh + render). Medians of repeated runs.
Last line: `console_scale_ratio R (target <= 1.5)`, the worse of the two 10,000 / 10 ratios.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from supervisor.console import pages  # noqa: E402
from supervisor.console.view import InstanceView  # noqa: E402
from supervisor.route.ledger import LEDGER_FILE_NAME, LedgerEntry  # noqa: E402
from supervisor.route.pricing import Usage  # noqa: E402
from supervisor.store.decision_log import GENESIS, Decision, record_hash  # noqa: E402
from supervisor.store.instance import Instance  # noqa: E402

EVENTS = 40
PAGES = 30
PASSES = [{"name": "candidate", "ok": True, "reason": "", "duration_s": 3.2, "counts": {"passed": 12}}]


class Writer:
    """Appends hash-chained decisions and ledger entries with chosen timestamps."""

    def __init__(self, state: Path) -> None:
        self.log = open(state / "decisions.jsonl", "a")
        self.ledger = open(state / LEDGER_FILE_NAME, "a")
        self.prev, self.seq = GENESIS, 0

    def decision(self, at: datetime, kind: str, **fields) -> None:
        self.seq += 1
        record = Decision.model_validate(
            {"seq": self.seq, "at": at.isoformat(), "kind": kind, "prev": self.prev, "hash": "0", **fields}
        ).model_dump()
        record["hash"] = record_hash(record)
        self.log.write(json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n")
        self.prev = record["hash"]

    def spend(self, at: datetime, cycle: str) -> None:
        entry = LedgerEntry(
            ts=at,
            run_id="bench",
            cycle=cycle,
            model="claude-sonnet-5-5",
            stream=False,
            status=200,
            complete=True,
            usage=Usage(input_tokens=900, output_tokens=300),
            cost_usd=Decimal("0.0072"),
        )
        self.ledger.write(entry.model_dump_json() + "\n")

    def generation(self, at: datetime, gen: int) -> None:
        """One rejected and one accepted proposal made by generation `gen`."""
        self.spend(at, f"c{gen}a")
        self.decision(
            at + timedelta(seconds=10),
            "rejected",
            candidate=f"{gen}-1",
            commit=f"{gen:040x}"[-40:],
            main_before=_sha(gen),
            main_after=_sha(gen),
            reasons=["candidate: 1 test failed"],
            details={
                "summary": f"try {gen}",
                "passes": PASSES,
                "failures": [{"test_id": "agent/tests/test_x.py::test_y", "message": "assert 1 == 2"}],
            },
        )
        self.spend(at + timedelta(seconds=20), f"c{gen}b")
        self.decision(
            at + timedelta(seconds=30),
            "accepted",
            candidate=f"{gen}-2",
            commit=_sha(gen + 1),
            main_before=_sha(gen),
            main_after=_sha(gen + 1),
            generation=gen + 1,
            details={"summary": f"improve {gen}", "passes": PASSES, "failures": []},
        )

    def flush(self) -> None:
        self.log.flush()
        self.ledger.flush()


def _sha(n: int) -> str:
    return f"a{n:039x}"


def make_instance(root: Path, generations: int) -> tuple[Instance, Writer, datetime]:
    home = root / f"home-{generations}"
    home.mkdir(parents=True)
    (home / "ouroboros.toml").write_text("")
    subprocess.run(["git", "init", "--quiet", "--bare", str(home / "repo.git")], check=True)
    state = home / "repo.git" / "ouroboros"
    state.mkdir()
    writer = Writer(state)
    start = datetime.now(UTC) - timedelta(minutes=generations + EVENTS + 5)
    writer.decision(start, "genesis", commit=_sha(0), main_after=_sha(0), generation=0)
    for gen in range(generations):
        writer.generation(start + timedelta(minutes=gen, seconds=5), gen)
    writer.flush()
    return Instance(home), writer, start + timedelta(minutes=generations)


def prepare(root: Path, generations: int) -> dict:
    instance, writer, at = make_instance(root, generations)
    view = InstanceView(instance)
    began = time.perf_counter()
    while view.store.update():  # one update reads at most a few MB; catch up on the whole history
        pass
    return {
        "view": view,
        "writer": writer,
        "at": at,
        "next": generations,
        "initial_s": time.perf_counter() - began,
        "updates": [],
        "renders": [],
    }


def one_event(case: dict) -> None:
    case["writer"].generation(case["at"] + timedelta(seconds=case["next"]), case["next"])
    case["writer"].flush()
    case["next"] += 1
    began = time.perf_counter()
    case["view"].refresh()
    case["updates"].append((time.perf_counter() - began) / 4)  # four records: two decisions, two ledger entries


def one_page(case: dict) -> None:
    began = time.perf_counter()
    case["view"].refresh()
    case["html"] = pages.main_page(case["view"])
    case["renders"].append(time.perf_counter() - began)


def summary(case: dict) -> dict[str, float]:
    return {
        "initial_s": case["initial_s"],
        "update_ms": statistics.median(case["updates"]) * 1000,
        "page_ms": statistics.median(case["renders"]) * 1000,
        "page_kb": len(case["html"]) / 1024,
    }


def measure(root: Path) -> tuple[dict, dict]:
    """Both instances first, then events and pages taken in turns, so load on the machine hits both alike."""
    small, large = prepare(root, 10), prepare(root, 10_000)
    for _ in range(EVENTS):
        for case in (small, large):
            one_event(case)
    for _ in range(PAGES):
        for case in (small, large):
            one_page(case)
    return summary(small), summary(large)


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="ouroboros-bench-console-"))
    try:
        small, large = measure(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for name, result in (("10", small), ("10,000", large)):
        print(
            f"{name:>6} generations: first consumption {result['initial_s']:.2f} s, update "
            f"{result['update_ms']:.2f} ms/event, main page {result['page_ms']:.1f} ms ({result['page_kb']:.0f} KB)"
        )
    update_ratio = large["update_ms"] / small["update_ms"]
    page_ratio = large["page_ms"] / small["page_ms"]
    print(f"update_ratio {update_ratio:.2f}  page_ratio {page_ratio:.2f}")
    print(f"console_page_ms_10000 {large['page_ms']:.1f} (target < 300)")
    print(f"console_scale_ratio {max(update_ratio, page_ratio):.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
