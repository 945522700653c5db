"""Claims on the fleet's PostgreSQL queue: throughput and latency with 50 concurrent claimers.

A throw-away local PostgreSQL 15 (tests/pg_cluster.py: initdb + pg_ctl, durability off, as the
tests run it) gets 1,000,000 queued tasks (loaded with COPY); 50 claimers (10 processes × 5
threads, each thread with its own connection) claim through PostgresTaskQueue.claim, the real
code path, timed per call. The same is done with 1,000 queued tasks, to show that a claim's cost
does not grow with the queue; with one claimer alone (the cost of a claim without waiting for a
CPU); and with the 50 claimers paced to 500 claims/s in all (an open loop below saturation).
50 claimers in a closed loop wait for each other's CPU: by Little's law their latency is
50 / throughput, so on a small machine the p99 says how many cores there are more than how the
queue scales; the load average is printed with it. A claim is one statement in autocommit and the
pool's check costs no round trip (supervisor/base/pg/pool.py), so it takes one round trip in all.
The last line is the headline: the closed loop's p99 at 1,000,000 queued.
Usage: python bench/fleet_claims.py [--tasks N] [--claims-per-claimer N]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from supervisor.base.pg.migrate import migrate  # noqa: E402
from supervisor.base.pg.pool import Database  # noqa: E402
from supervisor.store.tasks.pg_queue import PostgresTaskQueue  # noqa: E402
from tests.pg_cluster import PgCluster, start_cluster  # noqa: E402

PROCESSES, THREADS = 10, 5
PACED_RATE = 500  # claims per second offered by the 50 claimers together in the paced run
BASE = "a" * 40


def prepare(cluster: PgCluster, name: str, tasks: int) -> str:
    url = cluster.url(cluster.create_database(name))
    with Database(url, password=cluster.password, application_name="loader", min_size=1) as db:
        migrate(db.open())
        PostgresTaskQueue(db).add_project("bench", "file:///srv/bench.git")
        with db.connection() as conn:
            started = time.perf_counter()
            with (
                conn.cursor() as cursor,
                cursor.copy(
                    "COPY tasks (project, title, body, base_commit, fail_to_pass, test_patch, priority, source, state,"
                    " created_at, updated_at) FROM STDIN"
                ) as copy,
            ):
                for n in range(tasks):
                    copy.write_row(("bench", f"task {n}", "", BASE, "[]", "", n % 100, "bench", "queued", "now", "now"))
            conn.commit()
            conn.execute("ANALYZE tasks")
            conn.commit()
            print(f"loaded {tasks:>9,} queued tasks with COPY in {time.perf_counter() - started:6.1f} s")
    return url


def claimer_process(
    url: str, password: str, claims: int, start: object, results: object, every_s: float | None = None
) -> None:
    sys.path.insert(0, str(ROOT))
    latencies: list[float] = []
    lock = threading.Lock()
    dbs = [
        Database(url, password=password, application_name="claimer", min_size=1, max_size=1).open()
        for _ in range(THREADS)
    ]

    def run(db: Database, worker: str) -> None:
        queue = PostgresTaskQueue(db, check=False)
        mine = []
        next_at = time.perf_counter() + (random.uniform(0, every_s) if every_s else 0.0)
        for _ in range(claims):
            if every_s:  # paced: claim on a schedule, whatever the last claim took (an open loop)
                time.sleep(max(0.0, next_at - time.perf_counter()))
                next_at += every_s
            began = time.perf_counter()
            claim = queue.claim(worker, 1800)
            mine.append(time.perf_counter() - began)
            if claim is None:
                break
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run, args=(db, f"w{id(db)}")) for db in dbs]
    start.wait()  # type: ignore[attr-defined]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for db in dbs:
        db.close()
    results.put(latencies)  # type: ignore[attr-defined]


def measure(url: str, password: str, claims: int, every_s: float | None = None) -> tuple[float, list[float]]:
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(PROCESSES + 1), context.Queue()
    children = [
        context.Process(target=claimer_process, args=(url, password, claims, start, results, every_s))
        for _ in range(PROCESSES)
    ]
    for child in children:
        child.start()
    start.wait()
    began = time.perf_counter()
    latencies = [x for _ in children for x in results.get(timeout=600)]
    wall = time.perf_counter() - began
    for child in children:
        child.join()
    return wall, sorted(latencies)


def percentile(sorted_values: list[float], p: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))] * 1000


def alone(url: str, password: str, claims: int) -> list[float]:
    """Latencies of one claimer with the database to itself."""
    with Database(url, password=password, application_name="alone", min_size=1, max_size=1) as db:
        queue = PostgresTaskQueue(db.open())
        latencies = []
        for _ in range(claims):
            began = time.perf_counter()
            queue.claim("alone", 1800)
            latencies.append(time.perf_counter() - began)
    return sorted(latencies)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--claims-per-claimer", type=int, default=200)
    args = parser.parse_args()
    cluster = start_cluster()
    try:
        report = {}
        for label, tasks, claims in (("1,000", 1000, 18), (f"{args.tasks:,}", args.tasks, args.claims_per_claimer)):
            url = prepare(cluster, f"bench_{tasks}", tasks)
            wall, latencies = measure(url, cluster.password, claims)
            rate = len(latencies) / wall
            report[label] = (percentile(latencies, 50), percentile(latencies, 99))
            single = alone(url, cluster.password, 50 if tasks <= 1000 else 1000)
            print(
                f"{label:>9} queued: {len(latencies):6,} claims by {PROCESSES * THREADS} claimers in {wall:5.1f} s = "
                f"{rate:7.0f} claims/s; latency p50 {report[label][0]:5.1f} ms  p99 {report[label][1]:5.1f} ms  "
                f"mean {statistics.fmean(latencies) * 1000:5.1f} ms"
            )
            print(
                f"{'':>9}         one claimer alone: p50 {percentile(single, 50):5.2f} ms  p99 "
                f"{percentile(single, 99):5.2f} ms  (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
            )
            if tasks > 1000:  # the same 50 claimers paced at PACED_RATE claims/s in all: latency below saturation
                wall, paced = measure(url, cluster.password, 100, every_s=PROCESSES * THREADS / PACED_RATE)
                print(
                    f"{'':>9}         50 claimers paced at {PACED_RATE} claims/s in all ({len(paced) / wall:.0f} "
                    f"achieved): p50 {percentile(paced, 50):5.2f} ms  p99 {percentile(paced, 99):5.2f} ms"
                )
        small, large = report["1,000"], report[f"{args.tasks:,}"]
        print(f"p99 at 1,000 queued {small[1]:.1f} ms vs at {args.tasks:,} queued {large[1]:.1f} ms")
        print(f"claim_p99_ms {large[1]:.1f} (target < 20)")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
