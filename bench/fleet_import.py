"""`supervisor fleet import` of 100,000 lines: the importing process's peak memory and the time it takes.

A throw-away local PostgreSQL 15 (tests/pg_cluster.py, as the tests run it) gets the fleet schema
and one project; an instance (HOME) is configured for it. A JSONL file of 100,000 SWE-bench-sized
instances is generated (per line: a problem statement of about 1,500 characters, a test patch of
about 2,500, 2 FAIL_TO_PASS and 30 PASS_TO_PASS test ids, hints; about 6 KB a line, 600 MB in
all). The real command, `supervisor fleet import FILE --json`, runs in a child process; its peak
resident memory is the child's own (os.wait4's rusage), its time the wall clock. The instance has
no mirror of the project, so the bases are listed as unchecked instead of being checked by git
(the git checks run a child git per base and patch and are not what this measures). The output
is checked: 100,000 ids, rising in file order, and as many queued tasks in the database.

Before the import streamed (every line read into memory, then one executemany over every row,
RETURNING every whole row, in one transaction) the command was reported to peak at about 1.8 GB;
on this file it peaked at 4,114 MB and took 99 s: every line was held as a parsed task three times
over (read, re-validated for the insert, returned by the insert) with every breakdown besides.
Streamed (1,000 lines read, checked, prioritised and inserted at a time, only ids sent back), it
peaks at 143 MB and takes 50 s. The target, under 300 MB, is the interpreter with the CLI's
imports (about 60 MB) plus one chunk in its forms (about 6 MB of text, a few times over), plus
what must grow with the line count for the all-or-nothing rule and the output: the ids, and the
(project, instance_id) keys that find a repeated instance (about 20 MB each for 100,000), with
room for longer lines than these.
Usage: python bench/fleet_import.py [--lines N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from supervisor.base.pg.migrate import migrate  # noqa: E402
from supervisor.base.pg.pool import Database  # noqa: E402
from supervisor.store.instance_init import init_instance  # noqa: E402
from supervisor.store.tasks.pg_queue import PostgresTaskQueue  # noqa: E402
from tests.pg_cluster import PgCluster, start_cluster  # noqa: E402

PW_ENV = "FLEET_BENCH_PW"
WORDS = (
    "the parser fails when a nested field holds an empty list and the caller expects a default value so the "
    "result is wrong after the second call with a timezone aware datetime in the config object of the module"
).split()


def _text(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    size = 0
    while size < chars:
        word = rng.choice(WORDS)
        words.append(word)
        size += len(word) + 1
    return " ".join(words)


def _patch(rng: random.Random, n: int) -> str:
    lines = [
        f"diff --git a/tests/test_m{n}.py b/tests/test_m{n}.py",
        f"--- a/tests/test_m{n}.py",
        "+++ b/tests/test_m{n}.py",
    ]
    lines.append("@@ -1,3 +1,60 @@")
    while sum(len(line) + 1 for line in lines) < 2500:
        lines.append(f"+    assert parse({rng.randrange(10**6)}) == {_text(rng, 30)!r}")
    return "\n".join(lines) + "\n"


def write_lines(path: Path, count: int) -> int:
    rng = random.Random(20)
    opened = datetime(2024, 1, 1, tzinfo=UTC)
    with path.open("w", encoding="utf-8") as out:
        for n in range(count):
            line = {
                "instance_id": f"bench__bench-{n}",
                "repo": "bench/bench",
                "base_commit": f"{n:040x}",
                "problem_statement": f"Issue {n}: " + _text(rng, 1500),
                "FAIL_TO_PASS": json.dumps([f"tests/test_m{n}.py::test_fix_{k}" for k in range(2)]),
                "PASS_TO_PASS": json.dumps([f"tests/test_m{n}.py::test_existing_behaviour_{k}" for k in range(30)]),
                "test_patch": _patch(rng, n),
                "patch": "the reference fix, never queued",
                "labels": ["bug"] if n % 3 else ["docs"],
                "created_at": (opened - timedelta(days=n % 400)).isoformat(),
            }
            if n % 5 == 0:
                line["impact"] = 0.7
            out.write(json.dumps(line) + "\n")
    return path.stat().st_size


def prepare(cluster: PgCluster, folder: Path, lines: int) -> tuple[Path, str]:
    url = cluster.url(cluster.create_database("bench_import"))
    with Database(url, password=cluster.password, application_name="loader", min_size=1) as db:
        migrate(db.open())
        PostgresTaskQueue(db).add_project("bench", "https://example.invalid/bench/bench.git", {"language": "python"})
    home = folder / "node"
    init_instance(home)
    (home / "ouroboros.toml").write_text(
        f'[fleet]\ndatabase = "{url}"\npassword_env = "{PW_ENV}"\nnode = "bench"\n'
        f"[fleet.budgets]\nlanguage_tasks = {lines}\n"
    )
    return home, url


def run_import(home: Path, path: Path, password: str) -> tuple[float, float, str]:
    """(peak RSS in MB, seconds, stdout) of `supervisor fleet import` in a child process."""
    code = "import sys; from supervisor.cli import main; sys.exit(main())"
    command = [sys.executable, "-c", code, "fleet", "import", str(path), "--home", str(home), "--json"]
    env = {**os.environ, PW_ENV: password, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        began = time.perf_counter()
        child = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env, cwd=ROOT)
        _, status, usage = os.wait4(child.pid, 0)
        took = time.perf_counter() - began
        child.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        out, err = stdout.read().decode(), stderr.read().decode()
    if child.returncode != 0:
        raise SystemExit(f"the import failed ({child.returncode}): {out[-2000:]} {err[-2000:]}")
    return usage.ru_maxrss / 1024, took, out


def check(out: str, url: str, password: str, lines: int) -> None:
    ids = json.loads(out)["queued"]
    assert len(ids) == lines and ids == sorted(ids) and len(set(ids)) == lines, "ids not one per line in order"
    with (
        Database(url, password=password, application_name="checker", min_size=1) as db,
        db.open().transaction() as cursor,
    ):
        cursor.execute("SELECT count(*) AS n, min(id) AS low, max(id) AS high FROM tasks WHERE state = 'queued'")
        row = cursor.fetchone()
        assert row is not None and row["n"] == lines and (row["low"], row["high"]) == (ids[0], ids[-1]), row
        cursor.execute("SELECT external_id FROM tasks WHERE id = %s", (ids[-1],))
        last = cursor.fetchone()
        assert last is not None and last["external_id"] == f"bench__bench-{lines - 1}", last


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=100_000)
    args = parser.parse_args()
    cluster = start_cluster()
    try:
        with tempfile.TemporaryDirectory(prefix="ouroboros-import-bench-") as scratch:
            folder = Path(scratch)
            path = folder / "instances.jsonl"
            size = write_lines(path, args.lines)
            print(f"generated {args.lines:,} lines, {size / 2**20:.0f} MB")
            home, url = prepare(cluster, folder, args.lines)
            peak, took, out = run_import(home, path, cluster.password)
            check(out, url, cluster.password, args.lines)
            print(
                f"imported {args.lines:,} lines in {took:.1f} s ({args.lines / took:,.0f} lines/s), peak RSS {peak:.0f} MB"
            )
            print(f"fleet_import_peak_mb {peak:.0f} (target < 300)")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
