"""The `ouroboros` command line: run the loop, inspect state, give feedback, run tools, propose."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from agent.cli_tools import tools
from agent.config import AgentConfig
from agent.errors import AgentError
from agent.goals import GoalBook
from agent.journal import Journal
from agent.llm import LLMClient, build_sdk_client
from agent.loop import Agent
from agent.proposal import pending_proposals, write_proposal
from agent.registry import default_registry
from agent.usage import Usage


class AgentGroup(click.Group):
    """Turns the agent's own errors and validation errors into one clean line and exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AgentError as e:
            raise click.ClickException(str(e)) from e
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'value'}: {err['msg']}" for err in e.errors())
            raise click.ClickException(f"invalid setting: {problems}") from e


@click.group(cls=AgentGroup)
@click.option(
    "--workspace",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="OUROBOROS_WORKSPACE",
    help="Agent repository to work in (env OUROBOROS_WORKSPACE; default: the current folder).",
)
@click.option("--model", envvar="OUROBOROS_MODEL", help="Claude model id (env OUROBOROS_MODEL).")
@click.option(
    "--max-tokens", type=int, envvar="OUROBOROS_MAX_TOKENS", help="Max output tokens per call (default 4096)."
)
@click.pass_context
def main(ctx: click.Context, workspace: Path | None, model: str | None, max_tokens: int | None) -> None:
    """Ouroboros, the self-improving agent: plan, execute, journal, reflect, self-modify, repeat."""
    ctx.obj = AgentConfig.from_env(workspace=workspace, model=model, max_tokens=max_tokens)


def _agent(config: AgentConfig, stop: threading.Event | None = None, max_turns: int | None = None) -> Agent:
    if max_turns is not None:
        config = config.model_copy(update={"max_turns": max_turns})
    GoalBook(config.goals_dir).read_active()  # a missing goals file is reported before anything runs
    journal = Journal(config.journal_dir)
    llm = LLMClient(config, build_sdk_client(config), on_usage=journal.record_call)
    return Agent(config, llm, default_registry(), stop)


def _echo_report(report: Any, reflection_only: bool = False) -> None:
    status = "stopped" if report.stopped else "complete" if report.completed else "incomplete"
    proposals = ", ".join(report.proposals) or "none"
    what = "reflection" if reflection_only else f"cycle: {report.goal} — {status}"
    click.echo(f"{what}; proposals: {proposals}; tokens: {report.usage.line()}")


@main.command()
@click.option(
    "--max-cycles", type=click.IntRange(min=1), help="Stop after this many cycles (default: run until SIGTERM)."
)
@click.option("--max-turns", type=click.IntRange(min=1), help="Tool-use turns per step (default 12).")
@click.pass_obj
def run(config: AgentConfig, max_cycles: int | None, max_turns: int | None) -> None:
    """Run cycles until SIGTERM/SIGINT (the current step finishes, then exit 0) or --max-cycles."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    agent = _agent(config, stop, max_turns)
    click.echo(f"ouroboros: running in {config.workspace} with {config.model}", err=True)
    cycles = agent.run(max_cycles)
    click.echo(f"ouroboros: stopped after {cycles} cycle(s)", err=True)


@main.command()
@click.option("--once", is_flag=True, default=True, help="Run exactly one cycle (the only mode; kept explicit).")
@click.option("--max-turns", type=click.IntRange(min=1), help="Tool-use turns per step (default 12).")
@click.pass_obj
def cycle(config: AgentConfig, once: bool, max_turns: int | None) -> None:
    """Run one full cycle: select a goal, plan, execute, journal, reflect, self-modify, journal."""
    _echo_report(_agent(config, max_turns=max_turns).cycle())


@main.command()
@click.pass_obj
def reflect(config: AgentConfig) -> None:
    """Reflect on the recent journal without a task, then self-modify and propose if worthwhile."""
    _echo_report(_agent(config).reflect(), reflection_only=True)


@main.command()
@click.argument("message")
@click.pass_obj
def feedback(config: AgentConfig, message: str) -> None:
    """Leave feedback for the agent; it reads recent feedback every cycle."""
    entry = Journal(config.journal_dir).append("user-feedback", "feedback", message)
    click.echo(f"feedback recorded at {entry.ts}")


@main.command()
@click.option("--why", required=True, help="Why the change helps; becomes the commit body.")
@click.option("--summary", help="One-line subject (default: first line of --why).")
@click.option("--json", "json_output", is_flag=True, help="Print one JSON document.")
@click.pass_obj
def propose(config: AgentConfig, why: str, summary: str | None, json_output: bool) -> None:
    """Propose the workspace's changes to the agent's code for the test gate (never commits)."""
    proposal, path = write_proposal(config.outbox, why, summary)
    body = f"**Proposal:** {proposal.id}\n\n**Summary:** {proposal.summary}\n\n{proposal.why}"
    Journal(config.journal_dir).append("notes", "proposal", body, data={"proposal": proposal.id})
    if json_output:
        click.echo(json.dumps({**proposal.model_dump(), "path": str(path)}))
    else:
        click.echo(f"proposal {proposal.id} written to {path}")


def _status(config: AgentConfig) -> dict[str, Any]:
    journal = Journal(config.journal_dir)
    entries = journal.entries()
    try:
        goals: list[str] | str = [g.title for g in GoalBook(config.goals_dir).read_active()]
    except AgentError as e:
        goals = f"error: {e}"
    # cycle entries carry plan+execute usage, reflection entries the rest: together, today's total
    today = sum((r.usage for r in journal.records_today() if r.usage and r.kind in ("cycle", "reflection")), Usage())
    return {
        "workspace": str(config.workspace),
        "model": config.model,
        "active_goals": goals,
        "journal_entries": len(entries),
        "last_entry": f"{entries[-1].ts} {entries[-1].kind}" if entries else None,
        "tokens_today": today.model_dump(),
        "pending_proposals": [p.id for p in pending_proposals(config.outbox)],
        "outbox": str(config.outbox),
    }


@main.command()
@click.option("--json", "json_output", is_flag=True, help="Print one JSON document.")
@click.pass_obj
def status(config: AgentConfig, json_output: bool) -> None:
    """Show goals, journal size, today's token use and pending proposals."""
    data = _status(config)
    if json_output:
        click.echo(json.dumps(data, indent=2))
        return
    goals = data["active_goals"]
    click.echo(f"workspace: {data['workspace']}\nmodel: {data['model']}")
    if isinstance(goals, str):
        click.echo(f"goals: {goals}")
    else:
        click.echo(f"goals: {len(goals)} active" + (f" (next: {goals[0]})" if goals else ""))
    click.echo(f"journal: {data['journal_entries']} entries; last: {data['last_entry'] or 'none'}")
    click.echo(f"tokens today: {Usage(**data['tokens_today']).line()}")
    click.echo(f"pending proposals: {len(data['pending_proposals'])} in {data['outbox']}")


main.add_command(tools)
