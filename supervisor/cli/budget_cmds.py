"""`supervisor budget`: LLM spend against the route's caps, read from the ledger the route writes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from supervisor.base.errors import ConfigError
from supervisor.base.git_ops import GitError, find_common_dir
from supervisor.cli.common import json_option
from supervisor.cli.contract import BudgetOut
from supervisor.route.checkpoint import read_totals
from supervisor.route.config import RouteConfig
from supervisor.route.ledger import LEDGER_FILE_NAME, Spend, utc_now
from supervisor.route.metering import cap_statuses
from supervisor.store.instance import CONFIG_NAME, HOME_ENV, Instance


def _locate(home: Path | None, repo: Path | None, config: Path | None) -> tuple[Path, Path | None]:
    """The state dir holding the ledger, and the config file with the caps (None: defaults)."""
    if home is not None or (repo is None and _looks_like_instance(Path(os.environ.get(HOME_ENV) or "."))):
        instance = Instance.locate(home)
        return instance.state, config or instance.config_path
    try:
        common = find_common_dir(repo or Path("."))
    except GitError as exc:
        raise ConfigError(f"{exc}; or pass --home DIR for an instance (or set {HOME_ENV})") from exc
    beside = common.parent / CONFIG_NAME  # an instance keeps repo.git next to its ouroboros.toml
    return common / "ouroboros", config or (beside if beside.is_file() else None)


def _looks_like_instance(path: Path) -> bool:
    return (path / CONFIG_NAME).is_file() and (path / "repo.git").is_dir()


def _spend(spend: Spend) -> dict[str, object]:
    return {"tokens": spend.tokens, "usd": str(spend.usd), "requests": spend.requests}


def budget_report(state_dir: Path, config: RouteConfig, config_path: Path | None) -> dict[str, Any]:
    """The report as plain JSON data, validated against the documented BudgetOut contract."""
    ledger_path = state_dir / LEDGER_FILE_NAME
    totals, torn = read_totals(ledger_path)  # the snapshot plus the lines after it: not the whole history
    day = utc_now().date().isoformat()
    last_cycle = totals.last_cycle()
    statuses = cap_statuses(totals, config.caps, last_cycle, day)
    report = {
        "ledger": str(ledger_path),
        "config": str(config_path) if config_path else None,
        "day": day,
        "spend": {
            "total": _spend(totals.total),
            "day": _spend(totals.day(day)),
            "last_cycle": {"id": last_cycle, **_spend(totals.cycle(last_cycle))} if last_cycle else None,
        },
        "caps": [{**status.model_dump(mode="json"), "reached": status.reached} for status in statuses],
        "refusing": any(status.reached for status in statuses),
        "torn_tail": torn,
    }
    return BudgetOut.model_validate(report).model_dump(mode="json")


def _render(report: dict[str, Any]) -> str:
    spend = report["spend"]
    lines = [
        f"ledger  {report['ledger']}",
        f"caps    {report['config'] or 'defaults (no ouroboros.toml found)'}",
        f"total   ${spend['total']['usd']}  {spend['total']['tokens']} tokens  {spend['total']['requests']} requests",
        f"today   ${spend['day']['usd']}  {spend['day']['tokens']} tokens  {spend['day']['requests']} requests  (UTC {report['day']})",
    ]
    if spend["last_cycle"]:
        cycle = spend["last_cycle"]
        lines.append(f"cycle   {cycle['id']}: ${cycle['usd']}  {cycle['tokens']} tokens  {cycle['requests']} requests")
    lines.append("")
    for cap in report["caps"]:
        mark = "REACHED" if cap["reached"] else f"{cap['fraction']:.0%}"
        where = {"cycle": f"cycle {cap['key']}", "day": "per day", "total": "total"}[cap["scope"]]
        unit = "USD" if cap["unit"] == "usd" else "tokens"
        lines.append(f"{where:<18} {cap['spent']:>14} of {cap['cap']:<12} {unit:<6} {mark}")
    if not report["caps"]:
        lines.append("no caps configured")
    if report["refusing"]:
        lines.append("\nthe route refuses new requests until a cap resets or is raised")
    return "\n".join(lines)


@click.command("budget")
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"The instance directory; default: ${HOME_ENV}, else the current directory if it is one.",
)
@click.option(
    "--repo",
    type=click.Path(path_type=Path),
    default=None,
    help="The agent repository instead of an instance; its ledger is in <git-common-dir>/ouroboros/.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"Take the caps from this {CONFIG_NAME} ([route] table); default: the instance's.",
)
@json_option
def budget_cmd(home: Path | None, repo: Path | None, config_path: Path | None, as_json: bool) -> None:
    """Show LLM spend against the route's caps: per day (UTC), in total, and for the latest cycle."""
    state_dir, config_file = _locate(home, repo, config_path)
    config = RouteConfig.load(config_file) if config_file else RouteConfig()
    report = budget_report(state_dir, config, config_file)
    click.echo(json.dumps(report, indent=1) if as_json else _render(report))


COMMANDS = [budget_cmd]
