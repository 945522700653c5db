"""`[fleet]` in ouroboros.toml: the shared PostgreSQL store of many supervisors (docs/fleet.md).

No `database`: this instance keeps the embedded queue and needs no server. The password is never
written here: only the name of an environment variable or of a file only the supervisor's user can
read. Times are seconds; the lease and heartbeat defaults are the seed's 30 and 5 minutes.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from supervisor.base.errors import ConfigError
from supervisor.base.secret_file import read_secret_file

if TYPE_CHECKING:  # psycopg is imported only by an instance that has a fleet
    from supervisor.base.pg.pool import Database

NODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"


def check_results_remote(remote: str) -> str:
    """`remote` when git may be given it as the results repository: a path, a file:// URL, or an
    https:// URL without credentials (they would sit in ouroboros.toml and on every push's command
    line); ConfigError otherwise (never repeating the URL, which may hold a token)."""
    if remote.startswith(("file://", "https://")):
        if remote.startswith("https://") and "@" in remote[len("https://") :].split("/", 1)[0]:
            raise ConfigError(
                "[fleet] results_remote holds credentials (user@ in the URL); remove them and give the nodes' user "
                "access another way (a credential-free https remote, or a shared path)"
            )
        return remote
    if "://" in remote or remote.startswith("-") or ":" in remote.split("/", 1)[0] or not remote.strip():
        raise ConfigError("[fleet] results_remote must be a path, a file:// URL or an https:// URL")
    return remote


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PriorityWeights(_Strict):
    """priority = health × health + impact × impact + ... (the seed's weights; used when tasks are prioritised)."""

    health: float = Field(default=1.0, ge=0)
    impact: float = Field(default=2.0, ge=0)
    solvability: float = Field(default=1.5, ge=0)
    urgency: float = Field(default=0.5, ge=0)


class FleetBudgets(_Strict):
    """The fleet's budget filters (the seed's defaults). Tokens and dollars are enforced on every LLM request
    by the route (supervisor/route/fleet_budget.py); `language_tasks` by the fleet's prioritisation."""

    project_tokens: int = Field(default=100_000, ge=0, description="Tokens per project.")
    language_tasks: int = Field(default=50, ge=0, description="Tasks per language.")
    weekly_tokens: int = Field(default=5_000_000, ge=0, description="Tokens per week, the whole fleet.")
    day_tokens: int | None = Field(default=None, ge=0, description="Tokens per UTC day, the whole fleet.")
    day_usd: Decimal | None = Field(default=None, ge=0, description="US dollars per UTC day, the whole fleet.")


class FleetAnalysis(_Strict):
    """How a node answers `fleet analyse` requests: one model call per task through its metered route
    (supervisor/loop/task_analyst.py)."""

    enabled: bool = Field(default=True, description="Whether this node takes analysis requests at all.")
    model: str | None = Field(default=None, description="None: [agent] model, else the route's first listed model.")
    max_tokens: int = Field(default=128, ge=16, le=4096, description="The answer's limit (it needs about 30).")
    body_chars: int = Field(default=1500, ge=100, le=100_000, description="Problem statement characters sent.")
    poll_s: float = Field(default=30, gt=0, le=3600, description="How often a node looks for requests.")
    stale_s: float = Field(default=600, ge=10, description="A taking older than this is a dead node's.")


class FleetSettings(_Strict):
    database: str | None = Field(
        default=None, description="postgresql://USER@HOST:PORT/NAME, no password; None: the embedded queue."
    )
    password_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    password_file: Path | None = Field(default=None, description="Refused when group or others may read it.")
    node: str | None = Field(default=None, pattern=NODE_PATTERN, description="None: host name + home hash.")
    lease_s: float = Field(default=1800, ge=10, description="A task's lease; a node renews it while it works.")
    heartbeat_s: float = Field(default=300, ge=1, description="How often a node says it is alive.")
    pool_min: int = Field(default=2, ge=1, le=100)
    pool_max: int = Field(default=10, ge=1, le=100)
    connect_timeout_s: float = Field(default=5, gt=0, le=120)
    pool_wait_s: float = Field(default=30, gt=0, le=600, description="Longest wait for a pooled connection.")
    max_lifetime_s: float = Field(default=1800, ge=60, description="A connection is replaced after this long.")
    results_remote: str | None = Field(
        default=None,
        description="A shared bare repository (path, file:// or https:// URL) every node pushes task branches to.",
    )
    weights: PriorityWeights = Field(default_factory=PriorityWeights)
    budgets: FleetBudgets = Field(default_factory=FleetBudgets)
    analysis: FleetAnalysis = Field(default_factory=FleetAnalysis)

    @field_validator("database")
    @classmethod
    def _url_without_password(cls, value: str | None) -> str | None:
        if value is not None:
            from supervisor.base.pg.pool import check_url

            try:
                check_url(value)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("results_remote")
    @classmethod
    def _results_remote(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                check_results_remote(value)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FleetSettings:
        if self.pool_min > self.pool_max:
            raise ValueError(f"pool_min {self.pool_min} is above pool_max {self.pool_max}")
        if self.heartbeat_s * 2 > self.lease_s:
            raise ValueError(f"heartbeat_s {self.heartbeat_s} must be at most half of lease_s {self.lease_s}")
        return self

    @property
    def enabled(self) -> bool:
        return self.database is not None

    def node_name(self, home: Path) -> str:
        """This node's identity: `node`, else the host name and a hash of the instance home."""
        if self.node:
            return self.node
        host = "".join(c if c.isalnum() or c in "._-" else "-" for c in socket.gethostname())[:40] or "host"
        return f"{host}-{hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:8]}"

    def password(self, environ: Mapping[str, str] | None = None) -> str | None:
        """From `password_env`, else `password_file`; None when neither is set (trust or peer auth)."""
        env = os.environ if environ is None else environ
        if self.password_env and env.get(self.password_env):
            return env[self.password_env]
        if self.password_file is not None:
            return read_secret_file(self.password_file, "[fleet] password_file")
        if self.password_env:
            raise ConfigError(
                f"[fleet] password_env names {self.password_env}, which is not set in the supervisor's "
                "environment; export it (or set password_file)"
            )
        return None


def open_database(settings: FleetSettings, home: Path, environ: Mapping[str, str] | None = None) -> Database:
    """The fleet database of this node, connected (DatabaseError with what to do otherwise)."""
    from supervisor.base.pg.pool import Database

    if settings.database is None:
        raise ConfigError("no [fleet] database in ouroboros.toml; set it to postgresql://USER@HOST:PORT/NAME")
    return Database(
        settings.database,
        password=settings.password(environ),
        application_name=settings.node_name(home),
        min_size=settings.pool_min,
        max_size=settings.pool_max,
        connect_timeout_s=settings.connect_timeout_s,
        max_lifetime_s=settings.max_lifetime_s,
        wait_s=settings.pool_wait_s,
    ).open()
