"""A fleet node's analyst in a process of its own, for kill -9 tests of an analysis in flight.

`python -m tests.fleet.analyst_rig URL PASSWORD UPSTREAM STATE_DIR NODE LEASE_S` starts a node's route
and fleet budget (budget_rig.start_node) and its TaskAnalyst, prints `ready`, and answers analysis
requests until killed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from supervisor.loop.task_analyst import TaskAnalyst
from supervisor.route.fleet_budget import FleetCaps
from supervisor.store.fleet_settings import FleetAnalysis, PriorityWeights
from tests.fleet.budget_rig import MODEL, start_node


def main(argv: list[str]) -> None:
    url, password, upstream_url, state, name, lease = argv
    caps = FleetCaps(weekly_tokens=10_000_000, project_tokens=1_000_000)
    node = start_node(
        url, password, upstream_url, Path(state), name, caps, lease_s=float(lease), heartbeat_s=float(lease) / 3
    )
    analyst = TaskAnalyst(
        node.db, node=name, route=lambda: node.route, model=MODEL, settings=FleetAnalysis(), weights=PriorityWeights()
    )
    print("ready", flush=True)
    while True:
        if not analyst.step():
            time.sleep(0.1)


if __name__ == "__main__":
    main(sys.argv[1:])
