"""A fleet node's LLM route for the budget tests and the benchmark: its own pool, fleet budget, ledger and route.

`python -m tests.fleet.budget_rig URL PASSWORD UPSTREAM STATE_DIR NODE CAPS_JSON LEASE_S` runs one node
in a process of its own (for kill -9 tests): it prints `ready <route url> <credential>` and serves
until killed.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from scripted_model import Scenario
from supervisor.base.pg.pool import Database
from supervisor.route import Ledger, LLMRoute, RouteConfig, Upstream
from supervisor.route.fleet_budget import FleetBudget, FleetCaps

MODEL = "claude-haiku-4-5"
MAX_TOKENS = 1000
USED = {"input_tokens": 50, "output_tokens": 900}  # 950 tokens, $0.00455 at the haiku price
OPEN = {"rate_per_s": 10_000, "rate_burst": 10_000, "max_concurrent": 128, "max_connections": 256}
NO_LOCAL_CAPS = {"per_cycle": {}, "per_day": {}, "total": {}}


def slow_scenario(usage: dict[str, int] = USED, delay_ms: int = 150) -> Scenario:
    step = {"content": [{"type": "text", "text": "streamed " * 6}], "usage": usage, "delay_ms": delay_ms}
    return Scenario.model_validate({"name": "fleet-caps", "steps": [step], "on_exhausted": "repeat"})


def route_config(upstream_url: str) -> RouteConfig:
    return RouteConfig.model_validate(
        {
            "upstream": {"base_url": upstream_url},
            "caps": NO_LOCAL_CAPS,
            "policy": {"models": [MODEL], "input_overhead_tokens": 0},
            "limits": OPEN,
        }
    )


@dataclass
class Node:
    """One simulated node: a pool of its own, its fleet budget, its ledger and its route."""

    name: str
    db: Database
    fleet: FleetBudget
    ledger: Ledger
    route: LLMRoute
    credential: str

    def stop(self) -> None:
        self.route.stop()
        self.ledger.close()
        self.fleet.close()
        self.db.close()


def start_node(
    url: str,
    password: str,
    upstream_url: str,
    state: Path,
    name: str,
    caps: FleetCaps,
    *,
    lease_s: float = 60.0,
    heartbeat_s: float = 10.0,
    pool_max: int = 10,
    wait_s: float = 2.0,
) -> Node:
    state.mkdir(parents=True, exist_ok=True)
    db = Database(url, password=password, application_name=name, min_size=2, max_size=pool_max, wait_s=wait_s).open()
    fleet = FleetBudget(db, name, caps, state / "fleet-pending.jsonl", lease_s=lease_s, heartbeat_s=heartbeat_s).open()
    config = route_config(upstream_url)
    ledger = Ledger.open(state / "llm-ledger.jsonl")
    upstream = Upstream.from_config(config.upstream, max_connections=128, environ={"ANTHROPIC_API_KEY": "k"})
    route = LLMRoute(config, ledger, upstream, lambda event: None, tcp_port=0, fleet=fleet).start()
    return Node(name, db, fleet, ledger, route, route.issue_credential(f"run-{name}"))


def body(stream: bool = True, max_tokens: int = MAX_TOKENS) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": max_tokens, "stream": stream, "messages": [{"role": "user", "content": "go"}]}


def caps_rows(db: Database) -> list[dict[str, Any]]:
    with db.transaction() as cursor:
        cursor.execute("SELECT id, cap, spent, reserved FROM budget_caps ORDER BY id")
        return cursor.fetchall()


def count(db: Database, sql: str, params: tuple[object, ...] = ()) -> Any:
    with db.transaction() as cursor:
        cursor.execute(sql.encode(), params)
        row = cursor.fetchone()
    assert row is not None
    return next(iter(row.values()))


class PeakWatcher:
    """Samples every cap row while requests run: the largest (spent + reserved) / cap seen."""

    def __init__(self, db: Database, every_s: float = 0.005) -> None:
        self.db = db
        self.every_s = every_s
        self.worst = Decimal(0)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakWatcher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self.db.transaction() as cursor:
                cursor.execute("SELECT max((spent + reserved) / NULLIF(cap, 0)) AS peak FROM budget_caps")
                row = cursor.fetchone()
            if row and row["peak"] is not None:
                self.worst = max(self.worst, Decimal(str(row["peak"])))
            self.samples += 1
            time.sleep(self.every_s)


def main(argv: list[str]) -> None:
    url, password, upstream_url, state, name, caps_json, lease = argv
    caps = FleetCaps.model_validate(json.loads(caps_json))
    node = start_node(
        url, password, upstream_url, Path(state), name, caps, lease_s=float(lease), heartbeat_s=float(lease) / 3
    )
    print(f"ready {node.route.url_tcp} {node.credential}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main(sys.argv[1:])
