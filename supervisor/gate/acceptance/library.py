"""Where scenarios live: the default set in this package, the operator's own in the instance.

Neither place is ever mounted into an agent or gate container: the scenarios are held out.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from pydantic import ValidationError

from supervisor.base.errors import ConfigError
from supervisor.base.toml_config import describe
from supervisor.gate.acceptance.models import AcceptanceSettings, Scenario

DEFAULT_DIR = Path(__file__).resolve().parent / "scenarios"
INSTANCE_DIR = "acceptance"
MAX_SCENARIO_BYTES = 200_000


def load_scenario_file(path: Path) -> Scenario:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read scenario {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_SCENARIO_BYTES:
        raise ConfigError(f"scenario {path} is larger than {MAX_SCENARIO_BYTES} bytes")
    try:
        return Scenario.model_validate(tomllib.loads(data.decode("utf-8")))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"scenario {path} is not valid TOML ({exc}); fix the file") from exc
    except ValidationError as exc:
        raise ConfigError(f"scenario {path} is invalid: {describe(exc)}; fix the file") from exc


def load_dir(folder: Path) -> list[Scenario]:
    if not folder.is_dir():
        return []
    return [load_scenario_file(path) for path in sorted(folder.glob("*.toml"))]


def default_scenarios() -> list[Scenario]:
    return load_dir(DEFAULT_DIR)


def instance_dir(home: Path, settings: AcceptanceSettings) -> Path:
    return home / (settings.scenarios_dir or INSTANCE_DIR)


def scenario_set(home: Path | None, settings: AcceptanceSettings) -> list[Scenario]:
    """The defaults (unless turned off) plus the instance's own; a name may appear only once."""
    found = default_scenarios() if settings.defaults else []
    if home is not None:
        found += load_dir(instance_dir(home, settings))
    names = [s.name for s in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"scenario names must be unique; rename: {', '.join(duplicates)}")
    return found


def add_scenario(home: Path, settings: AcceptanceSettings, source: Path) -> Path:
    """Validate a scenario file and copy it into the instance's scenario folder (atomically)."""
    scenario = load_scenario_file(source)
    folder = instance_dir(home, settings)
    folder.mkdir(parents=True, exist_ok=True)
    if scenario.name in {s.name for s in scenario_set(home, settings)}:
        raise ConfigError(f"a scenario named {scenario.name!r} exists already; choose another name")
    target = folder / f"{scenario.name}.toml"
    temp = folder / f".{scenario.name}.toml.{os.getpid()}"
    temp.write_bytes(source.read_bytes())
    os.replace(temp, target)
    return target
