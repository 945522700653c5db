"""What every command shares: the --home/--repo/--json options and how data is printed."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload

import click
from pydantic import BaseModel

from supervisor.cli.terminal_text import terminal_safe
from supervisor.store.instance import HOME_ENV, Instance

JSON_META = "ouroboros.json"


def _remember_json(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    # Eager, so even a usage error found later in parsing is reported as JSON.
    if value:
        ctx.meta[JSON_META] = True
    return value


json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    is_eager=True,
    callback=_remember_json,
    help="Print JSON instead of text (schema: docs/json.md); errors too.",
)

home_option = click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"The instance directory (default: ${HOME_ENV}, else the current directory).",
)

repo_option = click.option(
    "--repo",
    "repo",
    type=click.Path(path_type=Path),
    default=None,
    help="The agent repository (bare or not) instead of an instance; default: HOME/repo.git, "
    "else ./repo.git, else the repository containing cwd.",
)


def json_wanted() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.meta.get(JSON_META))


def resolve_repo(home: Path | None, repo: Path | None) -> Path | None:
    """--repo as given; else the instance's repo.git when --home (or $OUROBOROS_HOME) names one."""
    if repo is not None:
        return repo
    if home is not None:
        return Instance.locate(home).repo
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]) / "repo.git"
    return None


def to_jsonable(data: Any) -> Any:
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json")
    if isinstance(data, list):
        return [to_jsonable(item) for item in data]
    return data


def emit(as_json: bool, data: Any, text: str) -> None:
    """One JSON document (a model, or a list of models) or the text for a person.

    JSON escapes every control character itself; text may quote the agent's bytes, so it is made
    terminal-safe here, once for every command.
    """
    click.echo(json.dumps(to_jsonable(data), indent=1) if as_json else terminal_safe(text))


def emit_line(data: Any) -> None:
    """One JSON Lines record (for streams: `logs -f`, `start`)."""
    click.echo(json.dumps(to_jsonable(data)))


@overload
def utc(moment: datetime) -> datetime: ...
@overload
def utc(moment: None) -> None: ...
@overload
def utc(moment: datetime | None) -> datetime | None: ...
def utc(moment: datetime | None) -> datetime | None:
    """Aware UTC (ISO-8601 with +00:00 when dumped), whatever the stored value was."""
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
