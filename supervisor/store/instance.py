"""An instance: the directory `supervisor init` makes and `supervisor start` runs.

HOME/ouroboros.toml      the operator's config (this module's InstanceConfig)
HOME/repo.git/           the agent repository (bare): main, gen/N tags, candidates, rejected
HOME/repo.git/ouroboros/ the gate's state (decision log, candidates, worktrees, ledger)
HOME/memory/journal/     the agent's journal  } mounted over /workspace/agent/{journal,goals}:
HOME/memory/goals/       the agent's goals    } memory, never part of a code proposal
HOME/run/                what the running supervisor publishes: pid, status, sockets, code
HOME/logs/agent.log      the agent's output, rotated
HOME/projects/NAME/      a project: project.toml and the supervisor's bare mirror.git
HOME/tasks.sqlite3       the task queue (embedded default)
HOME/task-work/          the task work areas (the running one is the agent's /projects/NAME)
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from supervisor.base.errors import ConfigError
from supervisor.base.toml_config import read_toml, validate
from supervisor.route.config import RouteConfig
from supervisor.store.fleet_settings import FleetSettings

CONFIG_NAME = "ouroboros.toml"
HOME_ENV = "OUROBOROS_HOME"
REMOTE_PATTERN = r"^(https?|file)://[^@\s/]+(/\S*)?$|^file:///\S*$|^/\S*$"  # no user:password@ in it


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AcceptanceSettings(_Strict):
    """`[acceptance]` in the instance's ouroboros.toml."""

    enabled: bool = Field(default=True, description="Run held-out acceptance after the test passes.")
    scenarios_dir: str | None = Field(
        default=None, description="The operator's own scenarios (*.toml), relative to the instance home."
    )
    defaults: bool = Field(default=True, description="Also run the default scenario set.")
    max_parallel: int = Field(default=4, ge=1, le=32, description="Scenario containers at once (within the CPU cap).")


EventName = Literal["needs-approval", "accepted", "rejected", "rolled-back", "gave-up", "budget"]
ALL_EVENTS: list[EventName] = ["needs-approval", "accepted", "rejected", "rolled-back", "gave-up", "budget"]


class NotifySettings(BaseModel):
    """`[notify]` in ouroboros.toml: where to tell the operator, and about what."""

    model_config = ConfigDict(extra="forbid")

    webhook: str | None = Field(
        default=None, pattern=r"^https?://", description="POST the event as JSON (docs/operations.md) to this URL."
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Extra HTTP headers, e.g. Authorization.")
    command: list[str] | None = Field(
        default=None, min_length=1, description="Run this program with the event as JSON on stdin."
    )
    events: list[EventName] = Field(default_factory=lambda: list(ALL_EVENTS), description="Which events to send.")
    timeout_s: float = Field(default=10, gt=0, le=300, description="Per delivery; a slower hook is abandoned.")
    queue_size: int = Field(default=100, ge=1, le=10_000, description="Events waiting at most; then the oldest drop.")

    @property
    def enabled(self) -> bool:
        return bool(self.webhook or self.command)


class AgentSettings(_Strict):
    """How the agent container runs."""

    memory_mb: int = Field(default=1024, ge=64, description="Memory cap of the agent container.")
    cpus: float = Field(default=1.0, gt=0, description="CPU cap of the agent container.")
    pids: int = Field(default=256, ge=16, description="Process cap of the agent container.")
    stop_grace_s: float = Field(default=10, ge=0, description="SIGTERM-to-SIGKILL grace on stop.")
    model: str | None = Field(default=None, description="Model id passed to the agent (OUROBOROS_MODEL).")
    max_cycles: int | None = Field(default=None, ge=1, description="Cycles per agent run; None: forever.")
    proposals: Literal["gate", "drop"] = Field(
        default="gate",
        description="gate: judge the agent's proposals; drop: record each as proposal-dropped and discard it, "
        "so main never moves (a `task bench` scratch instance pins its generation so).",
    )
    command: list[str] = Field(
        default_factory=lambda: ["python", "-m", "agent", "run"], description="Agent entry point."
    )


class ProbationSettings(_Strict):
    """Restart intensity (Erlang/systemd style) and the rollback cap."""

    max_restarts: int = Field(default=5, ge=1, description="Crashes tolerated within window_s ...")
    window_s: float = Field(default=10, gt=0, description="... before the generation is rolled back.")
    probation_s: float = Field(default=60, gt=0, description="A generation that survives this long is marked good.")
    max_consecutive_rollbacks: int = Field(
        default=3, ge=1, description="Automatic rollbacks in a row before the supervisor stops."
    )
    restart_delay_s: float = Field(default=0.2, ge=0, description="Pause before restarting a crash.")


class LogSettings(_Strict):
    """The agent's output on the host (HOME/logs/agent.log)."""

    agent_log_max_mb: int = Field(default=10, ge=1, description="Size at which agent.log is rotated.")
    agent_log_keep: int = Field(default=5, ge=1, description="Rotated files kept (agent.log.1 ... .N).")


class DiskSettings(_Strict):
    """Hard caps on what the agent can write on the host (see supervisor/loop/diskcap.py)."""

    mode: Literal["auto", "loop", "off"] = Field(
        default="auto",
        description="loop: size-capped loop-mounted images (needs root); auto: loop when root.",
    )
    workspace_mb: int = Field(default=2048, ge=16, description="Cap of the candidate worktrees (the workspace).")
    memory_mb: int = Field(default=512, ge=16, description="Cap of the agent's memory (journal and goals).")
    outbox_mb: int = Field(default=64, ge=16, description="Cap of the proposal outbox.")


class ContributeSettings(_Strict):
    """`[contribute]` in ouroboros.toml: where the supervisor delivers task results (docs/delivery.md).

    Credentials are never written here: only the name of an environment variable or of a file that
    only the supervisor's user can read. One setting for every project (no per-project override yet).
    """

    auto: Literal["never", "passed"] = Field(
        default="never", description="passed: push (and open a PR) after a clean passed verdict; never: by hand only."
    )
    remote: str | None = Field(
        default=None,
        description="URL (https, http, file) or absolute path task branches are pushed to; no credential in it.",
    )
    branch_prefix: str = Field(
        default="ouroboros/task-",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$",
        description="A task's branch on the remote is this prefix followed by the task id.",
    )
    github_api: str = Field(default="https://api.github.com", pattern=r"^https?://\S+$", description="GitHub REST API.")
    github_repo: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$",
        description="owner/name the pull requests are opened on; None: no pull requests.",
    )
    token_env: str | None = Field(
        default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Environment variable holding the token."
    )
    token_file: Path | None = Field(
        default=None, description="File holding the token; refused when group or others may read it."
    )
    token_user: str = Field(
        default="x-access-token", min_length=1, description="User name given with the token on an https push."
    )
    base_branch: str | None = Field(
        default=None, min_length=1, description="Base of pull requests; None: the project's default branch."
    )
    push_timeout_s: float = Field(default=120, gt=0, le=3600, description="Deadline of one push.")
    api_timeout_s: float = Field(default=30, gt=0, le=600, description="Deadline of one GitHub API call.")

    @field_validator("remote")
    @classmethod
    def _remote_without_credentials(cls, value: str | None) -> str | None:
        if value is not None and not re.match(REMOTE_PATTERN, value):
            raise ValueError(
                "give an https://, http:// or file:// URL or an absolute path, without a user or password "
                "in it (the token goes in token_env or token_file)"
            )
        return value


class InstanceConfig(_Strict):
    agent: AgentSettings = Field(default_factory=AgentSettings)
    probation: ProbationSettings = Field(default_factory=ProbationSettings)
    route: RouteConfig = Field(default_factory=RouteConfig)
    acceptance: AcceptanceSettings = Field(default_factory=AcceptanceSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    logs: LogSettings = Field(default_factory=LogSettings)
    disk: DiskSettings = Field(default_factory=DiskSettings)
    contribute: ContributeSettings = Field(default_factory=ContributeSettings)
    fleet: FleetSettings = Field(default_factory=FleetSettings)
    scripted_scenario: Path | None = Field(
        default=None,
        description="Serve the agent from this scripted-model scenario instead of the real API.",
    )

    @model_validator(mode="after")
    def _route_allows_the_agent_model(self) -> InstanceConfig:
        """The route forwards only listed models; agent.model (and a fleet analysis model) is always one of them."""
        models = self.route.policy.models
        for model in (self.agent.model, self.fleet.analysis.model):
            if model and model not in models:
                models.append(model)
        return self

    @classmethod
    def load(cls, path: Path) -> InstanceConfig:
        return validate(cls, read_toml(path, "run `supervisor init` first"), str(path))


class Instance:
    """Paths of one instance; nothing here touches git or Docker."""

    def __init__(self, home: Path) -> None:
        self.home = home.resolve()

    @classmethod
    def locate(cls, home: Path | None) -> Instance:
        """HOME from the option, else $OUROBOROS_HOME, else the current directory; must be initialised."""
        chosen = Path(home or os.environ.get(HOME_ENV) or ".")
        instance = cls(chosen)
        if not instance.config_path.exists() or not instance.repo.exists():
            raise ConfigError(
                f"{instance.home} is not an Ouroboros instance (no {CONFIG_NAME} or repo.git); "
                "run `supervisor init DIR` and pass --home DIR (or set OUROBOROS_HOME)"
            )
        return instance

    @property
    def config_path(self) -> Path:
        return self.home / CONFIG_NAME

    @property
    def repo(self) -> Path:
        return self.home / "repo.git"

    @property
    def state(self) -> Path:
        return self.repo / "ouroboros"

    @property
    def memory(self) -> Path:
        return self.home / "memory"

    @property
    def journal(self) -> Path:
        return self.memory / "journal"

    @property
    def goals(self) -> Path:
        return self.memory / "goals"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def outbox(self) -> Path:
        """Where the agent writes its proposals (mounted into its container)."""
        return self.run_dir / "outbox"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def agent_log(self) -> Path:
        return self.logs / "agent.log"

    @property
    def disk_images(self) -> Path:
        """Where the size-capped images of the agent's writable areas live."""
        return self.home / "disk"

    @property
    def projects(self) -> Path:
        """The projects the agent works on: HOME/projects/NAME/{project.toml,mirror.git}."""
        return self.home / "projects"

    @property
    def tasks_db(self) -> Path:
        """The embedded task queue (SQLite); never mounted into a container."""
        return self.home / "tasks.sqlite3"

    @property
    def task_work(self) -> Path:
        """Private work areas of tasks; the running task's is mounted at /projects/NAME."""
        return self.home / "task-work"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "supervisor.pid"

    @property
    def status_file(self) -> Path:
        return self.run_dir / "status.json"

    @property
    def instance_id(self) -> str:
        """A stable label value for this instance's containers (reconcile is scoped to it)."""
        import hashlib

        return "home-" + hashlib.sha256(str(self.home).encode()).hexdigest()[:12]

    def config(self) -> InstanceConfig:
        return InstanceConfig.load(self.config_path)
