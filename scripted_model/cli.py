"""`python -m scripted_model serve|check`: run or validate a scenario."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from scripted_model.scenario import Compat, Scenario, ScenarioError, load_scenario
from scripted_model.server import ScriptedModelServer


@click.group()
def main() -> None:
    """Deterministic Anthropic Messages API server for tests and the no-key demo."""


@main.command()
@click.option(
    "--scenario", "scenario_path", required=True, type=click.Path(path_type=Path), help="JSON or TOML scenario file."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="TCP address to listen on.")
@click.option("--port", default=0, show_default=True, help="TCP port; 0 picks a free one.")
@click.option(
    "--socket", "socket_path", type=click.Path(path_type=Path), help="Listen on this Unix socket instead of TCP."
)
@click.option(
    "--compat",
    type=click.Choice(["approximate", "missing", "exact"]),
    help="Behave like Ollama/llama.cpp/vLLM: ignore tool_choice, report usage approximately, not at all, or exactly.",
)
@click.option("--compat-seed", default=0, show_default=True, help="Seed of the approximate usage (runs repeat).")
def serve(
    scenario_path: Path, host: str, port: int, socket_path: Path | None, compat: str | None, compat_seed: int
) -> None:
    """Serve the scenario until interrupted; prints the URL (or unix:PATH) it listens on."""
    try:
        scenario = with_compat(load_scenario(scenario_path), compat, compat_seed)
        server = ScriptedModelServer(scenario, host=host, port=port, socket_path=socket_path)
    except ScenarioError as e:
        raise click.ClickException(str(e)) from e
    except OSError as e:
        raise click.ClickException(f"cannot listen ({e.strerror or e}); choose another --port or --socket path") from e
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    click.echo(f"unix:{socket_path}" if socket_path else server.url, nl=True)
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def with_compat(scenario: Scenario, usage: str | None, seed: int) -> Scenario:
    """The scenario in the compat mode the command line asked for (none: as the file says)."""
    if usage is None:
        return scenario
    return scenario.model_copy(update={"compat": Compat.model_validate({"usage": usage, "seed": seed})})


@main.command()
@click.option(
    "--scenario", "scenario_path", required=True, type=click.Path(path_type=Path), help="JSON or TOML scenario file."
)
def check(scenario_path: Path) -> None:
    """Validate a scenario file and print its step count."""
    try:
        scenario = load_scenario(scenario_path)
    except ScenarioError as e:
        raise click.ClickException(str(e)) from e
    compat = f", compat usage={scenario.compat.usage}" if scenario.compat else ""
    click.echo(f"{scenario.name}: {len(scenario.steps)} steps, on_exhausted={scenario.on_exhausted}{compat}")
