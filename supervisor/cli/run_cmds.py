"""Operator commands for a running instance: init, start, status, stop, logs, feedback."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import click

from supervisor.instance import Instance
from supervisor.safe_text import echo

home_option = click.option(
    "--home", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="The instance directory (default: $OUROBOROS_HOME, else the current directory).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")


def _say(message: str) -> None:
    stamp = datetime.now().strftime("%H:%M:%S")
    echo(f"[{stamp}] {message}", err=True)


@click.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--scenario", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Serve the agent from this scripted-model scenario instead of the real API (no key needed).")
@click.option("--no-gate", is_flag=True, help="Skip gating generation 0 now (`supervisor start` gates it).")
@json_option
def init_cmd(directory: Path, scenario: Path | None, no_gate: bool, as_json: bool) -> None:
    """Make a new instance in DIRECTORY from the packaged agent, ready for `supervisor start`."""
    from supervisor.init_instance import init_instance

    instance = init_instance(directory, scenario.resolve() if scenario else None)
    generation = None
    if not no_gate:
        from sandbox.engine import DockerEngine
        from sandbox.images import ensure_agent_image
        from supervisor.gatekeeper import Gatekeeper

        engine = DockerEngine.connect()
        image = ensure_agent_image(engine)
        _say("gating generation 0 (the packaged agent's own tests, in a container) ...")
        generation = Gatekeeper(instance.repo, engine, journal_root=instance.journal, image=image,
                                instance=instance.instance_id).genesis()
    result = {"home": str(instance.home), "repo": str(instance.repo), "config": str(instance.config_path),
              "generation": generation}
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"instance ready in {instance.home}\n  config  {instance.config_path}\n"
                   f"  repo    {instance.repo}\n  memory  {instance.memory}\n"
                   f"start it with: supervisor start --home {instance.home}")


@click.command("start")
@home_option
def start_cmd(home: Path | None) -> None:
    """Run the agent in its container and gate its proposals, in the foreground, until SIGTERM.

    Uses the real Claude API with $ANTHROPIC_API_KEY unless the instance config names a scripted
    scenario. Progress goes to stderr; the agent's own output to HOME/logs/agent.log.
    """
    from sandbox.engine import DockerEngine
    from sandbox.images import ensure_agent_image
    from supervisor.runner import Supervisor

    instance = Instance.locate(home)
    engine = DockerEngine.connect()
    image = ensure_agent_image(engine, progress=_say)
    code = Supervisor(instance, engine, image, progress=_say).run()
    raise SystemExit(code)


@click.command("status")
@home_option
@json_option
def status_cmd(home: Path | None, as_json: bool) -> None:
    """Show generation, commit, uptime, state, last verdicts and tokens spent."""
    instance = Instance.locate(home)
    status = _read_status(instance)
    running = _running_pid(instance) is not None
    if not running:
        status["state"] = "stopped"
    status["tokens"] = _spend(instance)
    status["repository"] = _space(instance)
    if as_json:
        click.echo(json.dumps(status, indent=1))
        return
    lines = [f"state       {status.get('state')}",
             f"generation  {status.get('generation')}  ({(status.get('commit') or '-')[:12]})"]
    if running and status.get("started_at"):
        lines.append(f"uptime      {_since(status['started_at'])}")
    if status.get("generation_since"):
        lines.append(f"on it for   {_since(status['generation_since'])}  probation: {status.get('probation')}")
    lines.append(f"candidate   {status.get('candidate') or '-'}")
    lines.append(f"restarts    {status.get('restarts', 0)}")
    lines.append(f"tokens      {status['tokens']['tokens']}  (${status['tokens']['usd']})")
    if status["repository"]:
        space = status["repository"]
        lines.append(f"repository  {space['objects_bytes'] / 1e6:.1f} MB; {space['rejected']} rejected proposals "
                     f"kept ({space['rejected_bytes'] / 1e6:.1f} MB of it)")
    for verdict in status.get("verdicts", []):
        why = "; ".join(verdict.get("reasons") or [])[:100]
        lines.append(f"verdict     {verdict['candidate']}: {verdict['state']} {why}")
    echo("\n".join(lines))


@click.command("stop")
@home_option
@click.option("--timeout", default=360, show_default=True,
              help="Seconds to wait for a clean exit (a gate already running finishes first).")
@json_option
def stop_cmd(home: Path | None, timeout: int, as_json: bool) -> None:
    """Ask the running supervisor to stop (SIGTERM) and wait until it has."""
    instance = Instance.locate(home)
    pid = _running_pid(instance)
    if pid is None:
        raise click.ClickException(f"no supervisor is running for {instance.home}; nothing to stop")
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        raise click.ClickException(f"supervisor {pid} is already gone; nothing to stop")
    except PermissionError:
        raise click.ClickException(f"not allowed to signal supervisor {pid}; run `supervisor stop` as its user")
    deadline = time.monotonic() + timeout
    while _running_pid(instance) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    if _running_pid(instance) is not None:
        raise click.ClickException(f"supervisor {pid} did not stop within {timeout} s; check `supervisor logs`")
    click.echo(json.dumps({"stopped": pid}) if as_json else f"supervisor {pid} stopped")


@click.command("logs")
@home_option
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output (survives log rotation).")
@click.option("-n", "lines", default=50, show_default=True, type=click.IntRange(min=0), help="Lines of history.")
def logs_cmd(home: Path | None, follow: bool, lines: int) -> None:
    """Print the agent's output (HOME/logs/agent.log)."""
    from supervisor.logfile import follow as follow_file, tail_lines

    instance = Instance.locate(home)
    for line in tail_lines(instance.agent_log, lines):
        echo(line)
    if follow:
        try:
            for text in follow_file(instance.agent_log):
                echo(text, nl=False)
        except KeyboardInterrupt:
            pass


@click.command("feedback")
@click.argument("message")
@home_option
@json_option
def feedback_cmd(message: str, home: Path | None, as_json: bool) -> None:
    """Leave MESSAGE for the agent; it lands in today's user-feedback.md and its next reflection reads it."""
    from supervisor.journal_writer import JournalWriter

    if not message.strip():
        raise click.BadParameter("the feedback message is empty", param_hint="MESSAGE")
    instance = Instance.locate(home)
    path = JournalWriter(instance.journal).write("user-feedback", message, file_name="user-feedback.md")
    click.echo(json.dumps({"written": str(path)}) if as_json else f"feedback written to {path}")


def _read_status(instance: Instance) -> dict:
    from supervisor.status import StatusFile

    status = StatusFile(instance.status_file).read()
    return status.model_dump(mode="json") if status else {"state": "never started", "verdicts": []}


def _running_pid(instance: Instance) -> int | None:
    """The pid of the supervisor holding the instance lock, if one does."""
    import fcntl

    lock_path = instance.run_dir / "supervisor.lock"
    if not lock_path.exists():
        return None
    try:
        handle = open(lock_path)
    except PermissionError as exc:
        raise click.ClickException(f"cannot read {lock_path}; run this as the supervisor's user") from exc
    with handle:
        try:
            # Shared, so two probes never conflict; the running supervisor holds it exclusively.
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return int(instance.pid_file.read_text().strip())
            except (FileNotFoundError, ValueError):
                return None
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def _spend(instance: Instance) -> dict:
    from supervisor.route.ledger import LEDGER_FILE_NAME, LedgerTotals, read_entries

    entries, _ = read_entries(instance.state / LEDGER_FILE_NAME)
    totals = LedgerTotals()
    for entry in entries:
        totals.add(entry)
    return {"tokens": totals.total.tokens, "usd": str(totals.total.usd)}


def _space(instance: Instance) -> dict:
    """Space the agent repository uses (supervisor/retention.py); empty if it cannot be read."""
    from supervisor.git_ops import Git, GitError
    from supervisor.retention import space

    try:
        return space(Git(instance.repo), instance.repo / "ouroboros").model_dump()
    except (GitError, OSError):
        return {}


def _since(iso: str) -> str:
    seconds = int((datetime.now(timezone.utc) - datetime.fromisoformat(iso)).total_seconds())
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m{rest % 60:02d}s"





@click.command("demo")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to make the throw-away instance (default: a new temporary directory).")
@json_option
def demo_cmd(home: Path | None, as_json: bool) -> None:
    """Run the whole system once with the scripted model: one accepted and one rejected proposal.

    Needs no API key and no network: a throw-away instance, the real supervisor, gate, route and
    containers, and a scripted model server speaking the Anthropic Messages API.
    """
    from supervisor.demo import lineage, run_demo

    instance, verdicts = run_demo(home, progress=_say)
    summary = [{"candidate": v.candidate, "state": v.state, "generation": v.generation,
                "reasons": v.reasons} for v in verdicts]
    if as_json:
        click.echo(json.dumps({"home": str(instance.home), "verdicts": summary}, indent=1))
        return
    click.echo("\nVerdicts:")
    for verdict in verdicts:
        outcome = (f"accepted as generation {verdict.generation}" if verdict.state == "accepted"
                   else f"{verdict.state}: {'; '.join(verdict.reasons)[:300]}")
        echo(f"  candidate {verdict.candidate}: {outcome}")
    click.echo("\nLineage (generations, candidates, rejected proposals):")
    echo(lineage(instance))
    # The venv's bin is often not on PATH when the demo runs from scripts/demo.sh.
    exe = shutil.which("supervisor") or str(Path(sys.executable).parent / "supervisor")
    shown = next((v.candidate for v in verdicts if v.state != "accepted"), "<candidate>")
    click.echo(f"""
Where to look:
  journal      {instance.journal}  (notes.md, reflections.md: what the agent did and learned)
  agent log    {instance.agent_log}
  candidates   {exe} candidates --repo {instance.repo}
  a verdict    {exe} show {shown} --repo {instance.repo}
  decisions    {exe} log --repo {instance.repo}   (verify: {exe} verify-log --repo {instance.repo})
  git          git --git-dir {instance.repo} log --graph --all --oneline""")
COMMANDS = [init_cmd, start_cmd, status_cmd, stop_cmd, logs_cmd, feedback_cmd, demo_cmd]
