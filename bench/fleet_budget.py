"""Exact fleet-wide caps: 8 nodes × 50 concurrent streams against each of four kinds of cap.

A throw-away local PostgreSQL (tests/pg_cluster.py). For each kind of cap (week tokens, day tokens,
day dollars, project tokens) 8 node processes each start their own route, pool, fleet budget, ledger
and scripted model, then 50 streams per node ask until the fleet refuses them (each up to
--requests times). While they run the database's cap row is sampled: (spent + reserved) / cap at
every sample, and spent / cap at the end. Overshoot is what passes the cap, in percent of it.

Latency: the time each fleet reservation took inside the route under that load, and, alone (one
node, one client, requests one after another), the fleet's reservation against the local one (both
timed inside the route): the added latency per request; and the whole request with and without the
fleet, alternating on one route (reservation and settlement both added).
Usage: python bench/fleet_budget.py [--nodes 8] [--streams 50] [--requests 4]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx2  # noqa: E402

from scripted_model import ScriptedModelServer  # noqa: E402
from supervisor.base.pg.migrate import migrate  # noqa: E402
from supervisor.base.pg.pool import Database  # noqa: E402
from supervisor.route.fleet_budget import FleetCaps  # noqa: E402
from tests.fleet.budget_rig import PeakWatcher, body, slow_scenario, start_node  # noqa: E402
from tests.pg_cluster import start_cluster  # noqa: E402

FILL = 600  # each cap holds about this many answers of 950 tokens ($0.00455)
KINDS = {
    "week tokens": {"weekly_tokens": FILL * 1000, "project_tokens": None},
    "day tokens": {"weekly_tokens": None, "project_tokens": None, "day_tokens": FILL * 1000},
    "day usd": {"weekly_tokens": None, "project_tokens": None, "day_usd": str(Decimal("0.0048") * FILL)},
    "project tokens": {"weekly_tokens": None, "project_tokens": FILL * 1000},
}


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))] if ordered else float("nan")


def node_process(
    index: int, url: str, password: str, caps: dict[str, Any], state: str, args: Any, go: Any, out: Any
) -> None:
    upstream = ScriptedModelServer(slow_scenario(delay_ms=100)).start()
    node = start_node(url, password, upstream.url, Path(state), f"node{index}", FleetCaps.model_validate(caps))
    node.fleet.charge_project("bench")
    counts = {"served": 0, "refused": 0, "other": 0}
    lock = threading.Lock()

    def stream() -> None:
        headers = {"x-api-key": node.credential}
        with httpx2.Client(base_url=node.route.url_tcp, timeout=120) as client:
            go.wait()
            for _ in range(args.requests):
                with client.stream("POST", "/v1/messages", json=body(), headers=headers) as answer:
                    answer.read()
                kind = {200: "served", 402: "refused"}.get(answer.status_code, "other")
                with lock:
                    counts[kind] += 1
                if kind != "served":
                    break

    threads = [threading.Thread(target=stream) for _ in range(args.streams)]
    for thread in threads:
        thread.start()
    out.put(("ready", index))
    for thread in threads:
        thread.join()
    out.put(("done", index, counts, list(node.fleet.reserve_ms), node.fleet.late, upstream.steps_served))
    node.stop()
    upstream.stop()


def one_kind(url: str, password: str, kind: str, args: Any, scratch: Path) -> dict[str, Any]:
    ctx = multiprocessing.get_context("fork")
    go, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(
            target=node_process, args=(i, url, password, KINDS[kind], str(scratch / kind / str(i)), args, go, out)
        )
        for i in range(args.nodes)
    ]
    for proc in procs:
        proc.start()
    for _ in procs:
        assert out.get(timeout=120)[0] == "ready"
    with Database(url, password=password, application_name="bench-watch", min_size=1, max_size=2).open() as db:
        with PeakWatcher(db, every_s=0.002) as watcher:
            started = time.monotonic()
            go.set()
            results = [out.get(timeout=600) for _ in procs]
            wall = time.monotonic() - started
        with db.transaction() as cursor:
            cursor.execute("SELECT id, cap, spent, reserved FROM budget_caps")
            (row,) = cursor.fetchall()
            cursor.execute("SELECT count(*) AS open FROM budget_reservations")
            left_open = cursor.fetchone()["open"]  # type: ignore[index]
            cursor.execute(
                "SELECT count(*) AS n, coalesce(sum(tokens), 0) AS tokens FROM budget_settlements WHERE how = 'spent'"
            )
            settled = cursor.fetchone()
    for proc in procs:
        proc.join(60)
    with Database(url, password=password, application_name="bench-reset", min_size=1, max_size=1).open() as db:
        with db.transaction() as cursor:  # the next kind starts from nothing
            cursor.execute("TRUNCATE budget_settlements, budget_reservations, budget_caps, budget_holders")
    served = sum(r[2]["served"] for r in results)
    return {
        "row": row,
        "open": left_open,
        "settled": settled,
        "served": served,
        "upstream": sum(r[5] for r in results),
        "refused": sum(r[2]["refused"] for r in results),
        "other": sum(r[2]["other"] for r in results),
        "reserve_ms": [ms for r in results for ms in r[3]],
        "late": sum(r[4] for r in results),
        "peak": watcher.worst,
        "samples": watcher.samples,
        "wall": wall,
    }


def alone(url: str, password: str, scratch: Path, requests: int) -> dict[str, float]:
    """One node, one client, requests one after another, alternately with and without the fleet's
    reservation on the same route: medians of the whole request each way, of the fleet's reservation
    and settlement, and of the local reservation (timed inside the route)."""
    upstream = ScriptedModelServer(slow_scenario(delay_ms=0)).start()
    node = start_node(url, password, upstream.url, scratch / "alone", "alone", FleetCaps(weekly_tokens=10**12))
    local_ms: list[float] = []
    settle_ms: list[float] = []
    guard_reserve, fleet_settle = node.route.guard.reserve, node.fleet.settle

    def timed_guard(*a: Any) -> Any:
        started = time.perf_counter()
        try:
            return guard_reserve(*a)
        finally:
            local_ms.append((time.perf_counter() - started) * 1000)

    def timed_settle(*a: Any) -> None:
        started = time.perf_counter()
        fleet_settle(*a)
        settle_ms.append((time.perf_counter() - started) * 1000)

    node.route.guard.reserve = timed_guard  # type: ignore[method-assign]
    node.fleet.settle = timed_settle  # type: ignore[method-assign]
    fleet = node.route.fleet
    timings: dict[bool, list[float]] = {True: [], False: []}
    try:
        with httpx2.Client(base_url=node.route.url_tcp, timeout=30) as client:
            for number in range(requests * 2):
                with_fleet = number % 2 == 0
                node.route.fleet = fleet if with_fleet else None
                started = time.perf_counter()
                answer = client.post("/v1/messages", json=body(stream=False), headers={"x-api-key": node.credential})
                assert answer.status_code == 200, answer.text
                timings[with_fleet].append((time.perf_counter() - started) * 1000)
        node.route.fleet = fleet
        return {
            "with": statistics.median(timings[True]),
            "without": statistics.median(timings[False]),
            "reserve": statistics.median(node.fleet.reserve_ms),
            "settle": statistics.median(settle_ms),
            "local": statistics.median(local_ms),
        }
    finally:
        node.route.fleet = fleet
        node.stop()
        upstream.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--requests", type=int, default=4)
    parser.add_argument("--alone", type=int, default=300)
    args = parser.parse_args()
    cluster = start_cluster()
    worst = Decimal(0)
    reserve_ms: list[float] = []
    try:
        name = cluster.create_database("bench_budget")
        url = cluster.url(name)
        with Database(url, password=cluster.password, application_name="bench", min_size=1) as db:
            migrate(db.open())
        with tempfile.TemporaryDirectory(prefix=".bench-fleet-budget-", dir=ROOT) as tmp:
            for kind in KINDS:
                r = one_kind(url, cluster.password, kind, args, Path(tmp))
                row = r["row"]
                cap, spent = Decimal(str(row["cap"])), Decimal(str(row["spent"]))
                end_over = max(Decimal(0), (spent - cap) / cap * 100)
                peak_over = max(Decimal(0), (r["peak"] - 1) * 100)
                worst = max(worst, end_over, peak_over)
                reserve_ms += r["reserve_ms"]
                ok = r["open"] == 0 and r["settled"]["n"] == r["served"] == r["upstream"] and r["other"] == 0
                print(
                    f"{kind:15} {args.nodes}x{args.streams} streams: {r['served']} served, {r['refused']} refused, "
                    f"{r['other']} other in {r['wall']:.1f} s; spent {spent} of {cap} ({spent / cap:.1%}), "
                    f"peak (spent+reserved)/cap {r['peak']:.4f} over {r['samples']} samples; "
                    f"reservation p50 {percentile(r['reserve_ms'], 50):.2f} ms p99 {percentile(r['reserve_ms'], 99):.2f} ms; "
                    f"fleet ledger = served: {ok}"
                )
            quiet = alone(url, cluster.password, Path(tmp), args.alone)
        print(
            f"under load: fleet reservation p50 {percentile(reserve_ms, 50):.2f} ms p99 {percentile(reserve_ms, 99):.2f} ms "
            f"({len(reserve_ms)} reservations; {os.cpu_count()} CPUs shared by {args.nodes} nodes, their clients, "
            f"their scripted models and PostgreSQL; load average {os.getloadavg()[0]:.1f})"
        )
        print(
            f"alone: reservation p50 {quiet['reserve']:.2f} ms in the fleet vs {quiet['local']:.2f} ms local: "
            f"added {quiet['reserve'] - quiet['local']:.2f} ms p50 (target < 3); settlement in the fleet p50 "
            f"{quiet['settle']:.2f} ms; whole request p50 {quiet['with']:.2f} ms with the fleet vs "
            f"{quiet['without']:.2f} ms without (alternating on one route)"
        )
        print(f"fleet_overshoot_pct {worst:.2f} (target 0)")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
