"""Projects: third-party repositories the agent works on, one folder each under HOME/projects/NAME.

HOME/projects/NAME/project.toml   the operator's validated config (ProjectConfig)
HOME/projects/NAME/mirror.git/    the supervisor's bare mirror, fetched only by the supervisor

Nothing here touches git or Docker: supervisor/work/mirror.py fetches; this module only names and
reads. A project's repository is as hostile as the agent's workspace (docs/projects.md).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from supervisor.base.errors import ConfigError, OuroborosError
from supervisor.base.toml_config import read_toml, validate

PROJECT_FILE = "project.toml"
MIRROR = "mirror.git"
NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
DEFAULT_TASK_TOKENS = 100_000  # the seed's per-repository token limit, per task here


class ProjectError(OuroborosError):
    """An unknown project, a name already taken, or a project folder that cannot be read."""


class ProjectLimits(BaseModel):
    """What one test container of the project may use."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    memory_mb: int = Field(default=1024, ge=64, description="Memory cap of a test container, swap included.")
    cpus: float = Field(default=1.0, gt=0, le=64, description="CPU share of a test container, in cores.")
    pids: int = Field(default=256, ge=16, description="Most processes and threads in a test container.")
    tmpfs_mb: int = Field(default=256, ge=16, description="Size of the test container's /tmp.")


class ProjectConfig(BaseModel):
    """One project's config, as `supervisor project add` writes it and the operator may edit it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="Lower-case name; the folder and /projects/NAME.")
    source: str = Field(min_length=1, description="Where the supervisor fetches from: a git URL or a local path.")
    default_branch: str = Field(default="main", min_length=1, description="The branch new tasks start from.")
    test_command: list[str] = Field(
        default_factory=lambda: ["python", "-m", "pytest", "-q"],
        min_length=1,
        description="How the project's tests run; must be pytest (run with a trusted config, see docs/projects.md).",
    )
    image: str | None = Field(default=None, description="Image the tests run in; None: the agent image.")
    test_deadline_s: float = Field(default=600, gt=0, description="Deadline of one test run, enforced from outside.")
    task_deadline_s: float = Field(default=3600, gt=0, description="How long the agent may work on one task.")
    task_tokens: int = Field(default=DEFAULT_TASK_TOKENS, ge=1000, description="Token budget of one task.")
    max_mirror_mb: int = Field(default=2048, ge=1, description="Refuse a fetch that makes the mirror larger.")
    max_files: int = Field(default=100_000, ge=1, description="Refuse a commit with more files than this.")
    limits: ProjectLimits = Field(default_factory=ProjectLimits)


class ProjectRegistry:
    """The projects of one instance (HOME/projects)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, name: str) -> Path:
        if not re.match(NAME_PATTERN, name):
            raise ProjectError(
                f"{name!r} is not a project name; use lower-case letters, digits, '.', '_' or '-' (at most 63)"
            )
        return self.root / name

    def mirror(self, name: str) -> Path:
        return self.folder(name) / MIRROR

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / PROJECT_FILE).is_file())

    def exists(self, name: str) -> bool:
        return (self.folder(name) / PROJECT_FILE).is_file()

    def get(self, name: str) -> ProjectConfig:
        path = self.folder(name) / PROJECT_FILE
        if not path.is_file():
            known = ", ".join(self.names()) or "none yet"
            raise ProjectError(f"no project named {name!r} (known: {known}); add it with `supervisor project add`")
        try:
            return validate(ProjectConfig, read_toml(path, "add the project again"), str(path))
        except ConfigError as exc:
            raise ProjectError(str(exc)) from exc

    def all(self) -> list[ProjectConfig]:
        return [self.get(name) for name in self.names()]

    def save(self, config: ProjectConfig) -> None:
        """Write the config atomically (a kill leaves the old file or the new one)."""
        folder = self.folder(config.name)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / (PROJECT_FILE + ".tmp")
        tmp.write_text(render_toml(config), encoding="utf-8")
        tmp.replace(folder / PROJECT_FILE)

    def remove(self, name: str) -> None:
        folder = self.folder(name)
        if not folder.exists():
            raise ProjectError(f"no project named {name!r}; `supervisor project list` shows the known ones")
        (folder / PROJECT_FILE).unlink(missing_ok=True)  # first: a kill after this leaves no half project
        shutil.rmtree(folder, ignore_errors=True)


def render_toml(config: ProjectConfig) -> str:
    """The config as TOML (a flat writer is enough: strings, numbers, string lists, one table)."""

    def value(item: object) -> str:
        if isinstance(item, bool):
            return "true" if item else "false"
        if isinstance(item, int | float):
            return repr(item)
        if isinstance(item, list):
            return "[" + ", ".join(value(x) for x in item) + "]"
        return json.dumps(str(item)).replace("\x7f", "\\u007f")  # a JSON string is a TOML basic string

    lines: list[str] = []
    data = config.model_dump(mode="json", exclude={"limits"})
    for key, item in data.items():
        if item is not None:
            lines.append(f"{key} = {value(item)}")
    lines.append("")
    lines.append("[limits]")
    for key, item in config.limits.model_dump(mode="json").items():
        lines.append(f"{key} = {value(item)}")
    return "\n".join(lines) + "\n"
