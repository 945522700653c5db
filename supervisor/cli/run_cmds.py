"""Operator commands for a running instance: init, start, status, stop, logs, feedback."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import click

from supervisor.base import process_control
from supervisor.base.errors import EXIT_NOT_RUNNING, OuroborosError
from supervisor.cli.common import emit, emit_line, home_option, json_option, utc
from supervisor.cli.contract import (
    DemoOut,
    FeedbackOut,
    InitOut,
    LogLine,
    Spend,
    StartEvent,
    StatusOut,
    StopOut,
)
from supervisor.cli.terminal_text import echo
from supervisor.gate.retention import SpaceReport
from supervisor.store.instance import Instance


def _say(message: str) -> None:
    stamp = datetime.now().strftime("%H:%M:%S")
    echo(f"[{stamp}] {message}", err=True)


def _say_json(message: str) -> None:
    emit_line(StartEvent(at=datetime.now(UTC), kind="progress", message=message, exit_code=None))


@click.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--scenario",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Serve the agent from this scripted-model scenario instead of the real API (no key needed).",
)
@click.option("--no-gate", is_flag=True, help="Skip gating generation 0 now (`supervisor start` gates it).")
@json_option
def init_cmd(directory: Path, scenario: Path | None, no_gate: bool, as_json: bool) -> None:
    """Make a new instance in DIRECTORY from the packaged agent, then gate generation 0.

    The directory appears whole or not at all. If gating fails (no engine, a failing test), the
    instance stays and `supervisor start` gates generation 0 first.
    """
    from supervisor.store.instance_init import init_instance

    instance = init_instance(directory, scenario.resolve() if scenario else None)
    generation = None if no_gate else _gate_generation_zero(instance, as_json)
    result = InitOut(
        home=str(instance.home),
        repo=str(instance.repo),
        config=str(instance.config_path),
        memory=str(instance.memory),
        generation=generation,
        gated=generation is not None,
    )
    gated = (
        f"generation 0 passed the gate ({instance.repo} main, tag gen/0)"
        if generation is not None
        else "generation 0 not gated yet: `supervisor start` gates it first"
    )
    emit(
        as_json,
        result,
        f"instance ready in {instance.home}\n  config  {instance.config_path}\n"
        f"  repo    {instance.repo}\n  memory  {instance.memory}\n  {gated}\n"
        f"start it with: supervisor start --home {instance.home}",
    )


def _gate_generation_zero(instance: Instance, as_json: bool) -> int:
    from sandbox.engine import DockerEngine
    from sandbox.images import ensure_agent_image
    from supervisor.gate.gatekeeper import Gatekeeper

    progress = (lambda message: None) if as_json else _say
    try:
        engine = DockerEngine.connect()
        image = ensure_agent_image(engine, progress=progress)
        progress("gating generation 0 (the packaged agent's own tests, in a container) ...")
        return Gatekeeper(
            instance.repo, engine=engine, journal_root=instance.journal, image=image, instance=instance.instance_id
        ).genesis()
    except OuroborosError as exc:
        raise type(exc)(
            f"{exc}\n(the instance in {instance.home} was made; generation 0 is not gated yet: "
            f"fix the above, then `supervisor start --home {instance.home}` gates it first)"
        ) from exc


@click.command("start")
@home_option
@click.option(
    "--console",
    "console_bind",
    metavar="HOST:PORT",
    default=None,
    help="Also serve the read-only web console (`supervisor console`) here, e.g. 127.0.0.1:8788; "
    "anything but loopback needs $OUROBOROS_CONSOLE_TOKEN.",
)
@json_option
def start_cmd(home: Path | None, console_bind: str | None, as_json: bool) -> None:
    """Run the agent in its container and gate its proposals, in the foreground, until SIGTERM.

    Uses the real Claude API with $ANTHROPIC_API_KEY unless the instance config names a scripted
    scenario. Progress goes to stderr (with --json: JSON Lines on stdout); the agent's own output
    to HOME/logs/agent.log. Exit 0 after a stop, 4 after giving up (too many rollbacks), 3 when
    Docker is missing, 1 on other errors.
    """
    from sandbox.engine import DockerEngine
    from sandbox.images import ensure_agent_image
    from supervisor.cli.log_lines import lines_to
    from supervisor.loop.event_loop import Supervisor

    progress = _say_json if as_json else _say
    instance = Instance.locate(home)
    engine = DockerEngine.connect()
    image = ensure_agent_image(engine, progress=progress)
    if console_bind:
        from supervisor.console.server import start_in_thread

        console = start_in_thread(instance.home, console_bind, os.environ.get("OUROBOROS_CONSOLE_TOKEN"))
        progress(f"console: {console.url} (read-only)")
    with lines_to(progress):
        code = Supervisor(instance, engine, image).run()
    if as_json:
        emit_line(StartEvent(at=datetime.now(UTC), kind="exit", message="stopped", exit_code=code))
    raise SystemExit(code)


@click.command("status")
@home_option
@json_option
def status_cmd(home: Path | None, as_json: bool) -> None:
    """Show generation, commit, uptime, state, last verdicts and tokens spent.

    Exit 0 when a supervisor runs this instance, 3 when none does (as `systemctl is-active`).
    """
    instance = Instance.locate(home)
    report = status_report(instance)
    emit(as_json, report, _status_text(report))
    if not report.running:
        sys.exit(EXIT_NOT_RUNNING)


def status_report(instance: Instance) -> StatusOut:
    from supervisor.store.status_file import StatusFile, shown

    status = StatusFile(instance.status_file).read()
    running = process_control.is_locked(instance.run_dir / "supervisor.lock")
    fields = ("generation", "commit", "candidate", "agent_container", "probation", "restarts", "verdicts", "message")
    known = (
        status.model_dump(include=set(fields))
        if status
        else {
            "generation": None,
            "commit": None,
            "candidate": None,
            "agent_container": None,
            "probation": "n/a",
            "restarts": 0,
            "verdicts": [],
            "message": "",
        }
    )
    if not running:
        known.update(_main_generation(instance))  # the repository is the truth once nothing runs
    seen = shown(status, running, known["generation"])
    known["probation"] = seen.probation  # a stopped instance is never "on probation" (store/states.py)
    return StatusOut(
        running=running,
        state=seen.state,
        pid=status.pid if status and running else None,
        started_at=utc(status.started_at) if status else None,
        generation_since=utc(status.generation_since) if status else None,
        tokens=_spend(instance),
        repository=_space(instance),
        checked_at=datetime.now(UTC),
        **known,
    )


def _main_generation(instance: Instance) -> dict[str, str | int | None]:
    from supervisor.base.git_ops import MAIN_REF
    from supervisor.gate.gatekeeper import Gatekeeper

    gatekeeper = Gatekeeper(instance.repo, instance=instance.instance_id)
    main = gatekeeper.git.ref_value(MAIN_REF)
    return {"commit": main, "generation": gatekeeper.generation_of(main) if main else None}


def _status_text(status: StatusOut) -> str:
    lines = [f"state       {status.state}", f"generation  {status.generation}  ({(status.commit or '-')[:12]})"]
    if status.running and status.started_at:
        lines.append(f"uptime      {_since(status.started_at)}")
    if status.generation_since:
        lines.append(f"on it for   {_since(status.generation_since)}  probation: {status.probation}")
    lines.append(f"candidate   {status.candidate or '-'}")
    lines.append(f"restarts    {status.restarts}")
    lines.append(f"tokens      {status.tokens.tokens}  (${status.tokens.usd})")
    if status.repository:
        space = status.repository
        lines.append(
            f"repository  {space.objects_bytes / 1e6:.1f} MB; {space.rejected} rejected proposals "
            f"kept ({space.rejected_bytes / 1e6:.1f} MB of it)"
        )
    for verdict in status.verdicts:
        why = "; ".join(verdict.reasons or [])[:100]
        lines.append(f"verdict     {verdict.candidate}: {verdict.state} {why}")
    return "\n".join(lines)


@click.command("stop")
@home_option
@click.option(
    "--timeout",
    default=360,
    show_default=True,
    help="Seconds to wait for a clean exit (a gate already running finishes first).",
)
@json_option
def stop_cmd(home: Path | None, timeout: int, as_json: bool) -> None:
    """Ask the running supervisor to stop and wait until it has.

    A supervisor in this PID namespace gets SIGTERM; one elsewhere (in a container) is asked through
    HOME/run/control/stop, which its loop reads. No pid from another namespace is ever signalled.
    """
    instance = Instance.locate(home)
    lock = instance.run_dir / "supervisor.lock"
    started = time.monotonic()
    pid = process_control.holder(lock)
    if pid is None:
        raise click.ClickException(f"no supervisor is running for {instance.home}; nothing to stop")
    process_control.request_stop(instance.run_dir)
    via: Literal["control", "signal"] = "control" if pid == process_control.FOREIGN else _signal(pid)
    deadline = time.monotonic() + timeout
    while process_control.is_locked(lock) and time.monotonic() < deadline:
        time.sleep(0.2)
    if process_control.is_locked(lock):
        raise click.ClickException(f"the supervisor did not stop within {timeout} s; check `supervisor logs`")
    shown = _status_pid(instance) if pid == process_control.FOREIGN else pid
    result = StopOut(stopped=shown, via=via, seconds=round(time.monotonic() - started, 2))
    emit(as_json, result, f"supervisor {shown} stopped")


def _signal(pid: int) -> Literal["signal"]:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass  # gone between the lookup and now: the wait below sees the lock free
    except PermissionError as exc:
        raise click.ClickException(
            f"not allowed to signal supervisor {pid}; run `supervisor stop` as its user"
        ) from exc
    return "signal"


def _status_pid(instance: Instance) -> int:
    from supervisor.store.status_file import StatusFile

    status = StatusFile(instance.status_file).read()
    return status.pid if status else 0


@click.command("logs")
@home_option
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output (survives log rotation).")
@click.option("-n", "lines", default=50, show_default=True, type=click.IntRange(min=0), help="Lines of history.")
@json_option
def logs_cmd(home: Path | None, follow: bool, lines: int, as_json: bool) -> None:
    """Print the agent's output (HOME/logs/agent.log); with --json, one JSON object per line."""
    from supervisor.store.agent_log import follow as follow_file
    from supervisor.store.agent_log import tail_lines

    instance = Instance.locate(home)
    show: Callable[[str], None] = (
        (lambda text: emit_line(LogLine(line=text.rstrip("\n")))) if as_json else (lambda text: echo(text, nl=False))
    )
    for line in tail_lines(instance.agent_log, lines):
        show(line + "\n")
    if follow:
        try:
            for text in follow_file(instance.agent_log):
                show(text)
        except KeyboardInterrupt:
            pass


@click.command("feedback")
@click.argument("message")
@home_option
@json_option
def feedback_cmd(message: str, home: Path | None, as_json: bool) -> None:
    """Leave MESSAGE for the agent; it lands in today's user-feedback.md and its next reflection reads it."""
    from supervisor.store.journal_writer import JournalWriter

    if not message.strip():
        raise click.BadParameter("the feedback message is empty", param_hint="MESSAGE")
    instance = Instance.locate(home)
    path = JournalWriter(instance.journal).write("user-feedback", message, file_name="user-feedback.md")
    emit(as_json, FeedbackOut(written=str(path)), f"feedback written to {path}")


def _spend(instance: Instance) -> Spend:
    from supervisor.route.checkpoint import read_totals
    from supervisor.route.ledger import LEDGER_FILE_NAME

    totals, _ = read_totals(instance.state / LEDGER_FILE_NAME)  # snapshot plus tail: a weeks-old ledger costs the same
    return Spend(tokens=totals.total.tokens, usd=str(totals.total.usd))


def _space(instance: Instance) -> SpaceReport | None:
    """Space the agent repository uses (supervisor/gate/retention.py); empty if it cannot be read."""
    from supervisor.base.git_ops import Git, GitError
    from supervisor.gate.retention import space

    try:
        return space(Git(instance.repo), instance.repo / "ouroboros")
    except (GitError, OSError):
        return None


def _since(moment: datetime) -> str:
    seconds = int((datetime.now(UTC) - moment).total_seconds())
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m{rest % 60:02d}s"


@click.command("demo")
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to make the throw-away instance (default: a new temporary directory).",
)
@json_option
def demo_cmd(home: Path | None, as_json: bool) -> None:
    """Run the whole system once with the scripted model: two tasks on a sample project, one accepted and
    one rejected proposal.

    Needs no API key and no network: a throw-away instance, the real supervisor, gate, route and
    containers, and a scripted model server speaking the Anthropic Messages API.
    """
    from supervisor.cli.demo import demo_tasks, lineage, run_demo, task_patch
    from supervisor.store.verdicts import VerdictSummary

    instance, verdicts, task_ids = run_demo(home, progress=_say)
    tasks = demo_tasks(instance, task_ids)
    if as_json:
        summary = [
            VerdictSummary.model_validate(v.model_dump(include=set(VerdictSummary.model_fields))) for v in verdicts
        ]
        emit(True, DemoOut(home=str(instance.home), verdicts=summary, tasks=tasks), "")
        return
    click.echo("\nTask verdicts (the sample project, judged by its own tests in containers):")
    for task in tasks:
        echo(f"  task {task.id} {task.title}: {task.state}: {task.reason[:300]}")
        for label, ids in (("now passing", task.fail_to_pass_passed), ("still failing", task.fail_to_pass_failed)):
            if ids:
                echo(f"    {label}: {', '.join(ids)}")
        if task.regressions:
            echo(f"    regressions: {', '.join(task.regressions)}")
        if task.branch:
            echo(f"    branch: {task.branch} in {instance.projects / 'sample' / 'mirror.git'}")
    passed = next((t for t in tasks if t.state == "passed"), None)
    if passed is not None:
        click.echo(f"\nThe patch of task {passed.id}:")
        echo(task_patch(instance, passed.id))
    click.echo("\nVerdicts of the agent's proposals about itself:")
    for verdict in verdicts:
        outcome = (
            f"accepted as generation {verdict.generation}"
            if verdict.state == "accepted"
            else f"{verdict.state}: {'; '.join(verdict.reasons)[:300]}"
        )
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
  candidates   {exe} candidates --home {instance.home}
  a verdict    {exe} show {shown} --home {instance.home}
  tasks        {exe} task list --home {instance.home}   (one: {exe} task show ID --home {instance.home})
  decisions    {exe} log --home {instance.home}   (verify: {exe} verify-log --home {instance.home})
  git          git --git-dir {instance.repo} log --graph --all --oneline""")


COMMANDS = [init_cmd, start_cmd, status_cmd, stop_cmd, logs_cmd, feedback_cmd, demo_cmd]
