"""Commands about the container side: the images the agent and the gate run in, and cleanup."""

from __future__ import annotations

import time
from pathlib import Path

import click

from sandbox.engine import DockerEngine
from sandbox.spec import INSTANCE_LABEL, ROLE_LABEL, RUN_ID_LABEL
from supervisor.base import process_control
from supervisor.cli.common import emit, home_option, json_option
from supervisor.cli.contract import ContainerRow, ImageOut, ReconcileOut
from supervisor.store.instance import Instance


@click.group("image")
def image_group() -> None:
    """Build or show the agent/gate runtime image."""


base_option = click.option(
    "--base",
    default=None,
    help="Base image (default: $OUROBOROS_BASE_IMAGE, else the offline base if present, else a pulled "
    "python:3.11-slim-bookworm, else an offline base made with debootstrap as root).",
)


@image_group.command("build")
@base_option
@json_option
def image_build(base: str | None, as_json: bool) -> None:
    """Make sure the agent image exists; build only what changed since the last build."""
    from sandbox.images import ensure_agent_image, resolve_base

    started = time.monotonic()
    engine = DockerEngine.connect()
    chosen = base or resolve_base(engine, _progress)
    tag = ensure_agent_image(engine, base=chosen, progress=_progress)
    result = ImageOut(
        image=tag, present=True, base=chosen, base_present=True, seconds=round(time.monotonic() - started, 2)
    )
    emit(as_json, result, f"agent image {tag} ready ({result.seconds} s)")


def _progress(message: str) -> None:
    click.echo(message, err=True)


@image_group.command("show")
@base_option
@json_option
def image_show(base: str | None, as_json: bool) -> None:
    """Show which agent image the inputs name and whether it and its base exist; builds nothing."""
    from sandbox.images import agent_image_tag, candidate_bases, image_id

    started = time.monotonic()
    engine = DockerEngine.connect()
    bases = [base] if base else candidate_bases()
    chosen = next((name for name in bases if image_id(engine, name)), bases[0])
    base_id = image_id(engine, chosen)
    tag = agent_image_tag(base_id) if base_id else None
    present = bool(tag and image_id(engine, tag))
    result = ImageOut(
        image=tag,
        present=present,
        base=chosen,
        base_present=base_id is not None,
        seconds=round(time.monotonic() - started, 2),
    )
    state = "present" if present else "not built (run `supervisor image build`)"
    emit(
        as_json,
        result,
        f"agent image {tag or '-'}: {state}\nbase        {chosen}: {'present' if base_id else 'absent'}",
    )


@click.command("reconcile")
@home_option
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="Every Ouroboros container on this engine, of every instance (running agents included).",
)
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
@json_option
def reconcile(home: Path | None, everything: bool, dry_run: bool, as_json: bool) -> None:
    """Remove leftover containers of this instance (found by label, never by name), and list them.

    A running supervisor does this itself when it starts; refused while one runs the instance.
    """
    instance = None if everything else Instance.locate(home)
    if instance is not None and process_control.is_locked(instance.run_dir / "supervisor.lock") and not dry_run:
        raise click.ClickException(
            f"a supervisor runs {instance.home}: its containers are not leftovers "
            f"(it reconciles when it starts); stop it first or use --dry-run"
        )
    engine = DockerEngine.connect()
    label = instance.instance_id if instance else None
    rows = [_row(found) for found in engine.managed(label)]
    if not dry_run:
        rows = [row for row in rows if engine.remove_managed(row.id)]
    result = ReconcileOut(scope="all" if everything else "instance", instance=label, dry_run=dry_run, containers=rows)
    verb = "would remove" if dry_run else "removed"
    lines = [f"{verb} {len(rows)} container(s)" + (f" of {instance.home}" if instance else " (all instances)")]
    lines += [
        f"  {row.id[:12]} {row.name:<30} {row.role or '-':<6} {row.status:<8} {row.instance or '-'}" for row in rows
    ]
    emit(as_json, result, "\n".join(lines))


def _row(found: dict[str, str]) -> ContainerRow:
    return ContainerRow(
        id=found["id"],
        name=found["name"],
        status=found["status"],
        role=found.get(ROLE_LABEL),
        instance=found.get(INSTANCE_LABEL),
        run_id=found.get(RUN_ID_LABEL),
    )


COMMANDS = [image_group, reconcile]
