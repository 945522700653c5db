"""`supervisor fleet analyse`: ask the fleet's nodes for the model's estimate of queued tasks (docs/fleet.md).

The command only marks the tasks; a running node takes each request at its next poll
(`[fleet.analysis] poll_s`) and asks the model through its metered route (about 500 tokens a task),
then re-prioritises the task with the estimated solvability. `fleet task show ID` shows the answer.
"""

from __future__ import annotations

from pathlib import Path

import click

from supervisor.cli.common import emit, home_option, json_option
from supervisor.cli.fleet_common import open_fleet
from supervisor.cli.fleet_contract import FleetAnalyseOut
from supervisor.store.tasks.models import TaskError


@click.command("analyse")
@click.argument("task_ids", type=int, nargs=-1, metavar="[ID]...")
@click.option("--queued", "all_queued", is_flag=True, help="Every queued task that was never analysed.")
@home_option
@json_option
def fleet_analyse_cmd(task_ids: tuple[int, ...], all_queued: bool, home: Path | None, as_json: bool) -> None:
    """Ask for the model's estimate (category, complexity 1-10, solvability 0-1) of queued tasks.

    Give task ids, or --queued. Only queued tasks are analysed; the request is all or nothing. A node
    answers within its poll interval, spending about 500 tokens a task against the fleet's budgets.
    """
    from supervisor.store.tasks.pg_analysis import request_analysis

    if bool(task_ids) == all_queued:
        raise TaskError("give task ids or --queued (one of them): `supervisor fleet analyse 12 13` or `--queued`")
    with open_fleet(home) as fleet:
        asked = request_analysis(fleet.queue.db, None if all_queued else list(task_ids))
        poll_s = fleet.settings.analysis.poll_s
    out = FleetAnalyseOut(asked=asked)
    said = (
        f"asked for the analysis of {len(asked)} task(s); a running node answers each within about {poll_s:g} s "
        "(`supervisor fleet task show ID`)"
        if asked
        else "no queued task is waiting for an analysis"
    )
    emit(as_json, out, said)


COMMANDS: list[click.Command] = []  # registered under `supervisor fleet` by fleet_cmds.py
