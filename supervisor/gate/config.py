"""The gate's configuration: `gate.toml` at the root of the judged repository, validated strictly.

The config the gate obeys is always read from git objects of the *base* (`main`), never from the
candidate: `gate.toml` is a protected path, so a candidate cannot loosen its own gate. pytest's own
configuration is never read from the judged tree at all: the gate writes a trusted ini file from
`pytest_ini` below and points pytest at it (see supervisor/gate/passes.py).
"""

from __future__ import annotations

import re
import tomllib
from functools import lru_cache
from pathlib import PurePosixPath

from pydantic import BaseModel, ConfigDict, Field, field_validator

from supervisor.base.errors import ConfigError

CONFIG_FILE = "gate.toml"

DEFAULT_COMMAND = ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "agent/tests"]

DEFAULT_PROTECTED = [
    "supervisor/**",
    "sandbox/**",
    "gate.toml",
    "Dockerfile*",
    "**/Dockerfile*",
    ".ci/**",
    ".github/**",
    "agent_image/**",
    "scripted_model/**",
    "conftest.py",
    "pytest.ini",
    "pyproject.toml",
    "setup.cfg",
    "tox.ini",
    "setup.py",
    # Files that change how pytest is configured when found beside or above the tests.
    "**/pytest.ini",
    "**/tox.ini",
    "**/setup.cfg",
    "**/pyproject.toml",
]

# Never negotiable: the gate's own config and every git control file a tree can carry.
ALWAYS_PROTECTED = ["gate.toml", "**/.gitattributes", ".gitattributes", "**/.gitmodules", ".gitmodules"]

# Files that steer how Python or pytest start, wherever they are: in the main-tests pass they are
# always main's (a candidate's added or changed ones are left out), and a diff touching them needs
# approval (supervisor/gate/tamper.py).
MACHINERY_NAMES = {
    "conftest.py",
    "pytest.ini",
    "pytest.toml",
    ".pytest.toml",
    ".pytest.ini",
    "tox.ini",
    "setup.cfg",
    "sitecustomize.py",
    "usercustomize.py",
}
MACHINERY_SUFFIXES = (".pth",)
MACHINERY_FOLDER_SUFFIXES = (".dist-info", ".egg-info", ".egg-link")
PYTHON_NAMES = re.compile(r"^python(3(\.\d+)?)?$")
INI_KEY = re.compile(r"^[a-z][a-z0-9_]*$")


def is_test_machinery(path: str) -> bool:
    """A file that configures or extends pytest/Python start-up, or a test module outside test folders."""
    parts = path.split("/")
    name = parts[-1]
    if name in MACHINERY_NAMES or name.endswith(MACHINERY_SUFFIXES):
        return True
    if any(part.endswith(MACHINERY_FOLDER_SUFFIXES) for part in parts[:-1]) or name.endswith(MACHINERY_FOLDER_SUFFIXES):
        return True
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


class RetentionPolicy(BaseModel):
    """How many rejected proposals stay inspectable under refs/ouroboros/rejected/; the rest are pruned."""

    model_config = ConfigDict(extra="forbid")

    keep: int = Field(default=50, ge=0, description="Most rejected proposals kept (newest first).")
    max_age_days: float = Field(default=30, ge=0, description="Older rejected proposals are dropped.")
    max_total_mb: int = Field(default=300, ge=0, description="Most space (MB) held only by kept rejected proposals.")
    prune_grace_s: int = Field(
        default=600,
        ge=0,
        description="Unreachable objects younger than this survive a prune (a concurrent writer may still need them).",
    )
    gc_every_s: int = Field(default=3600, ge=0, description="Least time between two `git gc` runs.")
    keep_records: int = Field(
        default=5000,
        ge=1,
        description="Finished candidate records kept as files; older ones move to the archive (still shown by `show`).",
    )


class GateLimits(BaseModel):
    """Resource caps of each gate container."""

    model_config = ConfigDict(extra="forbid")

    memory_mb: int = Field(default=1024, ge=64, description="Memory cap, swap included.")
    cpus: float = Field(default=1.0, gt=0, le=64, description="CPU share, in cores.")
    pids: int = Field(default=256, ge=16, description="Most processes and threads at once.")
    tmpfs_mb: int = Field(default=256, ge=8, description="Size of the writable /tmp.")


class GateConfig(BaseModel):
    """What the gate runs and what it protects."""

    model_config = ConfigDict(extra="forbid")

    command: list[str] = Field(
        default_factory=lambda: list(DEFAULT_COMMAND),
        min_length=1,
        description="Test command, run with the candidate tree as cwd.",
    )
    pytest_ini: dict[str, str | list[str]] = Field(
        default_factory=dict,
        description="The trusted [pytest] ini the gate writes (markers, filterwarnings, ...); "
        "ini files in the judged tree are never read.",
    )
    plugins: list[str] = Field(
        default_factory=list, description="pytest plugins to load with -p; nothing else is autoloaded."
    )
    junit_option: str = Field(
        default="--junitxml={path}", description="Appended to the command; {path} is where the report goes."
    )
    deadline_s: float = Field(default=300, gt=0, le=7200, description="Kill the run after this long.")
    limits: GateLimits = Field(default_factory=GateLimits)
    protected: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PROTECTED),
        description="Patterns a proposal may not touch; `**` crosses folders.",
    )
    extra_protected: list[str] = Field(default_factory=list, description="Added to `protected`.")
    protect_new_top_level: bool = Field(
        default=True, description="Refuse new top-level files or folders (they could shadow modules)."
    )
    test_paths: list[str] = Field(
        default_factory=lambda: ["agent/tests/"],
        description="Folders holding the tests; changing existing ones needs approval.",
    )
    memory_paths: list[str] = Field(
        default_factory=lambda: ["agent/journal/", "agent/goals/"], description="Memory, never part of a proposal."
    )
    image: str | None = Field(default=None, description="Container image; default: the agent image.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment for the tests.")
    max_snapshot_mb: int = Field(default=200, ge=1, description="Largest workspace accepted as a proposal.")
    max_files: int = Field(default=20000, ge=1, description="Most files accepted in a proposal.")
    retention: RetentionPolicy = Field(default_factory=RetentionPolicy)

    @field_validator("command")
    @classmethod
    def _runs_pytest(cls, value: list[str]) -> list[str]:
        if len(value) < 3 or not PYTHON_NAMES.match(PurePosixPath(value[0]).name) or value[1:3] != ["-m", "pytest"]:
            raise ValueError(
                "command must run pytest as `python -m pytest ...`: the gate starts that Python "
                "isolated and gives pytest its own trusted configuration"
            )
        return value

    @field_validator("pytest_ini")
    @classmethod
    def _plain_ini(cls, value: dict[str, str | list[str]]) -> dict[str, str | list[str]]:
        for key, item in value.items():
            lines = [item] if isinstance(item, str) else item
            if not INI_KEY.match(key) or any("\n" in line or "\r" in line for line in lines):
                raise ValueError(f"pytest_ini.{key}: keys are plain names and values single lines (a list for several)")
        return value

    @field_validator("plugins")
    @classmethod
    def _plugin_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z_][\w.]*", name):
                raise ValueError(f"plugin {name!r} is not a module name")
        return value

    @field_validator("test_paths", "memory_paths")
    @classmethod
    def _folders(cls, value: list[str]) -> list[str]:
        cleaned = []
        for item in value:
            path = PurePosixPath(item)
            if path.is_absolute() or ".." in path.parts or not path.parts:
                raise ValueError(f"{item!r} must be a relative folder inside the repository")
            cleaned.append(str(path) + "/")
        return cleaned

    @field_validator("junit_option")
    @classmethod
    def _has_placeholder(cls, value: str) -> str:
        if "{path}" not in value:
            raise ValueError("junit_option must contain {path}, where the gate wants the JUnit report")
        return value

    def all_protected(self) -> list[str]:
        """Configured patterns, the non-negotiable ones, and every conftest.py above the tests."""
        above_tests = []
        for folder in self.test_paths:
            for parent in PurePosixPath(folder).parents:
                above_tests.append("conftest.py" if str(parent) == "." else f"{parent}/conftest.py")
        return list(dict.fromkeys([*self.protected, *self.extra_protected, *ALWAYS_PROTECTED, *above_tests]))

    def is_test_path(self, path: str) -> bool:
        return any(path.startswith(folder) for folder in self.test_paths)

    def is_memory_path(self, path: str) -> bool:
        return any(path.startswith(folder) or path + "/" == folder for folder in self.memory_paths)


def parse_config(text: str, source: str) -> GateConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML ({exc}); fix the file") from exc
    return GateConfig.model_validate(data.get("gate", data))


def matches(path: str, pattern: str) -> bool:
    """Glob match where `*` stays inside one folder, `**` crosses folders, and `dir/**` means the folder."""
    return _compiled(pattern).fullmatch(path) is not None


@lru_cache(maxsize=512)
def _compiled(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def protected_hits(paths: list[str], config: GateConfig, base_top_level: set[str]) -> list[str]:
    """Which of the changed paths a proposal may not touch, each with the rule it broke."""
    patterns = config.all_protected()
    hits = []
    for path in paths:
        rule = next((p for p in patterns if matches(path, p)), None)
        if rule:
            hits.append(f"{path} (protected: {rule})")
        elif config.protect_new_top_level and path.split("/", 1)[0] not in base_top_level:
            hits.append(f"{path} (new top-level entry)")
    return hits
