"""`supervisor acceptance list|show|add|run`: the held-out scenarios and the stage on its own."""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from supervisor.base.errors import ConfigError
from supervisor.cli.common import json_option
from supervisor.gate.acceptance.library import add_scenario, scenario_set
from supervisor.gate.acceptance.models import AcceptanceReport, ScenarioOutcome
from supervisor.gate.acceptance.stage import (
    agent_settings_for,
    operator_detail,
    run_stage,
    settings_for,
    stage_limits,
)
from supervisor.store.instance import CONFIG_NAME, HOME_ENV

if TYPE_CHECKING:  # imported where used, so that `supervisor --help` stays quick
    from supervisor.base.git_ops import Git
    from supervisor.gate.acceptance.models import Scenario
    from supervisor.gate.config import GateConfig

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

home_option = click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The instance (default: $OUROBOROS_HOME); without one, only the default set.",
)


def safe(text: str) -> str:
    """Agent-produced text made harmless for a terminal: control characters shown escaped."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _home(home: Path | None) -> Path | None:
    chosen = home or (Path(os.environ[HOME_ENV]) if os.environ.get(HOME_ENV) else None)
    if chosen is not None and not (chosen / CONFIG_NAME).is_file():
        raise ConfigError(f"{chosen} is not an Ouroboros instance (no {CONFIG_NAME}); pass --home DIR")
    return chosen.resolve() if chosen else None


def _required_home(home: Path | None) -> Path:
    chosen = _home(home)
    if chosen is None:
        raise ConfigError("this needs an instance: pass --home DIR (or set OUROBOROS_HOME)")
    return chosen


def _emit(as_json: bool, data: Any, text: str) -> None:
    click.echo(json.dumps(data, indent=1, default=str) if as_json else text)


@click.group("acceptance")
def acceptance_group() -> None:
    """Held-out acceptance: scenarios that run the candidate agent for real and judge it from outside."""


@acceptance_group.command("list")
@home_option
@json_option
def list_cmd(home: Path | None, as_json: bool) -> None:
    """List the scenarios the gate runs: the default set, then the instance's own."""
    chosen = _home(home)
    scenarios = scenario_set(chosen, settings_for(chosen))
    rows = [{"name": s.name, "argv": s.argv, "calls": len(s.calls()), "description": s.description} for s in scenarios]
    _emit(as_json, rows, "\n".join(f"{r['name']:<18} {r['description']}" for r in rows) or "no scenarios")


@acceptance_group.command("show")
@click.argument("name")
@home_option
@json_option
def show_cmd(name: str, home: Path | None, as_json: bool) -> None:
    """Show one scenario in full (operator only: the agent never sees it)."""
    chosen = _home(home)
    found = [s for s in scenario_set(chosen, settings_for(chosen)) if s.name == name]
    if not found:
        raise ConfigError(f"no scenario named {name!r}; see `supervisor acceptance list`")
    data = found[0].model_dump(mode="json")
    _emit(as_json, data, json.dumps(data, indent=2, ensure_ascii=False))


@acceptance_group.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@home_option
@json_option
def add_cmd(file: Path, home: Path | None, as_json: bool) -> None:
    """Validate a scenario file (TOML) and add it to the instance's own set."""
    chosen = _required_home(home)
    target = add_scenario(chosen, settings_for(chosen), file)
    _emit(as_json, {"added": str(target)}, f"added {target}")


@acceptance_group.command("run")
@click.argument("rev", required=False)
@click.option(
    "--repo",
    type=click.Path(path_type=Path),
    default=None,
    help="The agent repository (default: the instance's, else the one containing cwd).",
)
@click.option("--scenario", "names", multiple=True, help="Run only these scenarios (repeatable).")
@home_option
@json_option
def run_cmd(rev: str | None, repo: Path | None, names: tuple[str, ...], home: Path | None, as_json: bool) -> None:
    """Run the acceptance stage on REV (default: main of the instance, else HEAD); exit 0 pass, 1 not."""
    from supervisor.base.git_ops import Git, find_common_dir
    from supervisor.gate.config import CONFIG_FILE, GateConfig, parse_config

    chosen = _home(home)
    git = Git(find_common_dir(repo or (chosen / "repo.git" if chosen else Path("."))))
    commit = git.rev_parse(rev or ("main" if chosen else "HEAD"))
    if commit is None:
        raise click.UsageError(f"{rev!r} names no commit in {git.git_dir}")
    settings = settings_for(chosen)
    scenarios = [s for s in scenario_set(chosen, settings) if not names or s.name in names]
    if not scenarios:
        raise ConfigError("no scenario to run; see `supervisor acceptance list`")
    blob = git.read_blob(commit, CONFIG_FILE)
    config = parse_config(blob.decode(errors="replace"), CONFIG_FILE) if blob else GateConfig()
    report = _run(git, commit, scenarios, config, settings.max_parallel, chosen)
    _emit(
        as_json,
        report.model_dump(mode="json"),
        safe(f"{report.summary()} in {report.duration_s:.1f} s\n" + operator_detail(report)),
    )
    sys.exit(0 if report.outcome is ScenarioOutcome.PASSED else 1)


def _run(
    git: Git, commit: str, scenarios: list[Scenario], config: GateConfig, max_parallel: int, home: Path | None
) -> AcceptanceReport:
    from sandbox.engine import DockerEngine
    from sandbox.images import ensure_agent_image
    from supervisor.store.instance import Instance

    engine = DockerEngine.connect()
    image = config.image or ensure_agent_image(engine, progress=lambda _message: None)
    workers, agent = stage_limits(
        config.limits.cpus, config.limits.memory_mb, len(scenarios), max_parallel, agent_settings_for(home)
    )
    label = Instance(home).instance_id if home else "acceptance-cli"
    # A neutral name: the container can read its mounts' host paths (/proc/self/mountinfo).
    with tempfile.TemporaryDirectory(prefix="ouroboros-") as scratch:
        return run_stage(git, engine, image, label, Path(scratch), commit, scenarios, workers, agent)


COMMANDS = [acceptance_group]
