"""`supervisor config check`: validate ouroboros.toml and gate.toml without starting anything."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click
from pydantic import ValidationError

from supervisor.base.errors import EXIT_FAILED, ConfigError, OuroborosError
from supervisor.base.toml_config import describe
from supervisor.cli.common import emit, home_option, json_option
from supervisor.cli.contract import ConfigCheckOut, ConfigFile
from supervisor.gate.config import CONFIG_FILE, parse_config
from supervisor.store.instance import CONFIG_NAME, HOME_ENV, InstanceConfig


@click.group("config")
def config_group() -> None:
    """Check the instance's configuration files."""


@config_group.command("check")
@home_option
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"An {CONFIG_NAME} to check instead of the instance's.",
)
@click.option(
    "--gate",
    "gate_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"A {CONFIG_FILE} file to check instead of the one committed on the instance's main.",
)
@json_option
def config_check(home: Path | None, config_path: Path | None, gate_path: Path | None, as_json: bool) -> None:
    """Validate ouroboros.toml and gate.toml (unknown keys are errors); exit 0 valid, 1 not.

    Without options: HOME/ouroboros.toml and the gate.toml committed on the main branch of
    HOME/repo.git (what the gate will use).
    """
    import os

    root = Path(home or os.environ.get(HOME_ENV) or ".").resolve()
    files = [_check_instance_config(config_path or root / CONFIG_NAME)]
    if gate_path is not None:
        files.append(_check_gate_text(str(gate_path), lambda: gate_path.read_text()))
    elif (root / "repo.git").is_dir():
        files.append(_check_gate_text(f"{root / 'repo.git'} main:{CONFIG_FILE}", lambda: _committed_gate(root)))
    result = ConfigCheckOut(ok=all(f.ok for f in files), files=files)
    lines = [f"{'ok     ' if f.ok else 'INVALID'} {f.path}" + "".join(f"\n    {e}" for e in f.errors) for f in files]
    emit(as_json, result, "\n".join(lines))
    if not result.ok:
        sys.exit(EXIT_FAILED)


def _check_instance_config(path: Path) -> ConfigFile:
    errors: list[str] = []
    try:
        InstanceConfig.load(path)
    except (ConfigError, OSError) as exc:
        errors.append(str(exc))
    return ConfigFile(path=str(path), kind="ouroboros.toml", ok=not errors, errors=errors)


def _check_gate_text(where: str, read: Callable[[], str | None]) -> ConfigFile:
    errors: list[str] = []
    try:
        text = read()
        if text is not None:
            parse_config(text, where)
    except ValidationError as exc:
        errors.append(f"{where} is invalid: {describe(exc)}")
    except (OuroborosError, OSError) as exc:
        errors.append(str(exc))
    return ConfigFile(path=where, kind="gate.toml", ok=not errors, errors=errors)


def _committed_gate(root: Path) -> str | None:
    from supervisor.base.git_ops import MAIN_REF, Git

    git = Git(root / "repo.git")
    data = git.read_blob(MAIN_REF, CONFIG_FILE)
    return data.decode(errors="replace") if data else None


COMMANDS = [config_group]
