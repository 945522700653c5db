"""Commands about the container side: the images the agent and the gate run in, and cleanup."""

from __future__ import annotations

import json
import time

import click

from sandbox.engine import DockerEngine
from sandbox.images import configured_base, ensure_agent_image


@click.group("image")
def image_group() -> None:
    """Build or show the agent/gate runtime image."""


@image_group.command("build")
@click.option("--base", default=None, help="Base image (default: $OUROBOROS_BASE_IMAGE, else an offline Debian base made with debootstrap).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def image_build(base: str | None, as_json: bool) -> None:
    """Make sure the agent image exists; build only what changed since the last build."""
    started = time.monotonic()
    engine = DockerEngine.connect()
    tag = ensure_agent_image(engine, base=base)
    result = {"image": tag, "base": base or configured_base(), "seconds": round(time.monotonic() - started, 2)}
    click.echo(json.dumps(result) if as_json else f"agent image {tag} ready ({result['seconds']} s)")


@click.command("reconcile")
@click.option("--json", "as_json", is_flag=True, help="Print the removed container ids as JSON.")
def reconcile(as_json: bool) -> None:
    """Remove every leftover container this project started (found by label, never by name)."""
    removed = DockerEngine.connect().reconcile()
    if as_json:
        click.echo(json.dumps({"removed": removed}))
    else:
        click.echo(f"removed {len(removed)} leftover container(s)")


COMMANDS = [image_group, reconcile]
