"""How long opening the LLM ledger takes, and how much memory, when it holds 1,000,000 records.

The ledger is written as the route writes it (a reservation and a settling spend per request,
500,000 requests over 100 days and 25,000 cycles), then:

1. opened once with no snapshot (the one-time full replay, e.g. a ledger from before snapshots),
   which leaves a snapshot on close;
2. 700 more records appended through the ledger, then the process killed without a clean close
   (the snapshot is then up to `SNAPSHOT_EVERY` records behind);
3. opened again in a fresh process: the headline, time and peak memory.

    python bench/ledger_open.py [--records 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

OPEN_AND_MEASURE = r"""
import json, resource, sys, time, tracemalloc
from pathlib import Path
tracemalloc.start()
from supervisor.route.ledger import Ledger, LedgerEntry, Reservation, utc_now
from supervisor.route.pricing import Usage
imported = tracemalloc.get_traced_memory()[0]
started = time.perf_counter()
ledger = Ledger.open(Path(sys.argv[1]))
elapsed = time.perf_counter() - started
peak = tracemalloc.get_traced_memory()[1] - imported
result = {"open_s": elapsed, "traced_peak_mb": peak / 2**20,
          "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
          "requests": ledger.totals.total.requests, "cycles": len(ledger.totals.by_cycle)}
mode = sys.argv[2]
if mode == "append-then-die":
    for n in range(350):
        held = Reservation(ts=utc_now(), id=f"late-{n}", run_id="r", cycle="late", day=utc_now().date().isoformat(),
                           model="m", usage=Usage(input_tokens=10, output_tokens=10), cost_usd="0.001")
        ledger.append(held)
        ledger.append(LedgerEntry(ts=utc_now(), run_id="r", cycle="late", model="m", stream=False, status=200,
                                  complete=True, usage=Usage(input_tokens=5, output_tokens=5), cost_usd="0.0005",
                                  reservation=held.id, charged_day=held.day))
    print(json.dumps(result), flush=True)
    import os; os._exit(0)  # killed: no clean close, no fresh snapshot
ledger.close()
print(json.dumps(result), flush=True)
"""


def write_ledger(path: Path, records: int) -> None:
    start = datetime(2026, 8, 1, tzinfo=UTC)
    requests = records // 2
    with open(path, "w", encoding="utf-8") as out:
        for n in range(requests):
            ts = start + timedelta(seconds=n * 100 * 86400 // requests)
            day = ts.date().isoformat()
            stamp = ts.isoformat().replace("+00:00", "Z")
            cycle = f"cycle-{n // 20}"
            out.write(
                f'{{"v":1,"ts":"{stamp}","kind":"reserve","id":"r{n}","run_id":"run-1","cycle":"{cycle}",'
                f'"day":"{day}","model":"claude-sonnet-4-5","stream":true,'
                f'"usage":{{"input_tokens":9000,"output_tokens":4096,"cache_creation_input_tokens":0,'
                f'"cache_read_input_tokens":0}},"cost_usd":"0.095"}}\n'
                f'{{"v":1,"ts":"{stamp}","kind":"spend","run_id":"run-1","cycle":"{cycle}",'
                f'"model":"claude-sonnet-4-5","stream":true,"status":200,"message_id":"msg_{n}","complete":true,'
                f'"usage":{{"input_tokens":2000,"output_tokens":300,"cache_creation_input_tokens":100,'
                f'"cache_read_input_tokens":5000}},"cost_usd":"0.012","reservation":"r{n}","charged_day":"{day}"}}\n'
            )


def measure(path: Path, mode: str) -> dict:
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", OPEN_AND_MEASURE, str(path), mode],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "llm-ledger.jsonl"
        started = time.perf_counter()
        write_ledger(path, args.records)
        print(
            f"wrote {args.records} records ({path.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - started:.1f} s"
        )
        first = measure(path, "append-then-die")
        print(
            f"first open, no snapshot (full replay, once): {first['open_s']:.2f} s, "
            f"traced peak {first['traced_peak_mb']:.1f} MB, process RSS peak {first['rss_peak_mb']:.0f} MB; "
            f"{first['requests']} requests, {first['cycles']} cycle buckets kept"
        )
        second = measure(path, "close")
        print(
            f"open with a snapshot behind by 700 records: {second['open_s']:.3f} s, "
            f"traced peak {second['traced_peak_mb']:.1f} MB, process RSS peak {second['rss_peak_mb']:.0f} MB "
            f"(the interpreter and imports included); {second['requests']} requests"
        )
        print(f"ledger_open_peak_mb {second['rss_peak_mb']:.0f} (target < 100)")
        print(f"ledger_open_s {second['open_s']:.3f} (target < 1)")


if __name__ == "__main__":
    main()
