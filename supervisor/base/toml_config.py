"""Read an operator's TOML file into a strict pydantic model, with errors that say what to fix."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from supervisor.base.errors import ConfigError

Model = TypeVar("Model", bound=BaseModel)


def read_toml(path: Path, missing_hint: str) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path} does not exist; {missing_hint}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix the file") from exc


def validate(model: type[Model], data: dict[str, Any], where: str) -> Model:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{where} is invalid: {describe(exc)}; fix the file") from exc


def describe(exc: ValidationError, limit: int = 5) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()[:limit]
    )
