"""`supervisor scorecard` and `supervisor console`: looking at an instance, never changing it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from supervisor.cli.common import home_option, json_option
from supervisor.store.instance import HOME_ENV

TOKEN_ENV = "OUROBOROS_CONSOLE_TOKEN"


@click.command("scorecard")
@home_option
@click.option("-n", "limit", type=click.IntRange(min=1), default=None, help="Only the newest N generations.")
@json_option
def scorecard_cmd(home: Path | None, limit: int | None, as_json: bool) -> None:
    """Show the scorecard of each generation, computed from the supervisor's own records."""
    from supervisor.base.text import plain
    from supervisor.console import pages
    from supervisor.console.view import for_home

    view = for_home(home)
    view.refresh()
    if as_json:
        click.echo(pages.scorecard_json(view, limit))
        return
    click.echo(
        f"{'gen':>4} {'commit':<12} {'alive':>12} {'cycles':>6} {'goals*':>6} {'tokens':>10} {'USD':>9} "
        f"{'tok/goal':>9} {'m/a/r/w':>9} {'crash':>5} {'rb':>3} {'tasks p/f/i':>11} {'pass':>5} {'regr':>4} "
        f"{'tok/pass':>9}  why"
    )
    for card in view.store.cards(limit=limit):
        per_goal = f"{card.tokens_per_goal:,.0f}" if card.tokens_per_goal is not None else "-"
        counts = f"{card.made}/{card.accepted}/{card.rejected}/{card.waiting}"
        tasks = f"{card.tasks_passed}/{card.tasks_failed}/{card.tasks_infrastructure}"
        click.echo(
            f"{card.generation:>4} {card.commit[:12]:<12} {pages.duration(card.alive_s):>12} {card.cycles:>6} "
            f"{card.goals:>6} {card.tokens:>10,} {card.usd:>9.4f} {per_goal:>9} {counts:>9} "
            f"{card.crashes:>5} {'yes' if card.rolled_back else '':>3} {tasks:>11} "
            f"{pages.percent(card.task_pass_rate) or '-':>5} {card.task_regressions:>4} "
            f"{pages.whole(card.tokens_per_passed_task) or '-':>9}  {plain(card.why, 80)}"
        )
    click.echo("* goals: as the agent's goals file says (the one figure the agent supplies); see docs/console.md")
    click.echo("tasks p/f/i: passed / failed or gave up / infrastructure, from the supervisor's task verdicts")


@click.command("console")
@home_option
@click.option(
    "--bind",
    default="127.0.0.1:8788",
    show_default=True,
    help="HOST:PORT to listen on; anything but loopback requires --token.",
)
@click.option(
    "--token",
    "use_token",
    is_flag=True,
    help=f"Require an access token: ${TOKEN_ENV}, else a new random one printed once.",
)
@json_option
def console_cmd(home: Path | None, bind: str, use_token: bool, as_json: bool) -> None:
    """Serve a read-only web page of the instance: status, lineage, scorecards, charts, log, journal, /metrics."""
    from supervisor.console.server import make_server, new_token

    token = (os.environ.get(TOKEN_ENV) or new_token()) if use_token else None
    server = make_server(home or Path(os.environ.get(HOME_ENV) or "."), bind, token)
    url = server.url + (f"?token={token}" if token and not os.environ.get(TOKEN_ENV) else "")
    if as_json:  # one line, then serve: a script reads where the console listens
        click.echo(json.dumps({"url": url, "read_only": True}))
    else:
        click.echo(f"console: {url}  (read-only; Ctrl-C stops it)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


COMMANDS = [scorecard_cmd, console_cmd]
