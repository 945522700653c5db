"""What a container may be: one hardened description used for every container we start."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MANAGED_LABEL = "io.ouroboros.managed"
RUN_ID_LABEL = "io.ouroboros.run-id"
ROLE_LABEL = "io.ouroboros.role"
INSTANCE_LABEL = "io.ouroboros.instance"

# A container that can reach the engine can escape every other limit.
_DOCKER_SOCKETS = {Path("/var/run/docker.sock"), Path("/run/docker.sock")}

Role = Literal["agent", "gate", "acceptance", "probe", "bench", "route-test"]


class Mount(BaseModel):
    """A bind mount; read-only unless a caller asks for writes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Path = Field(description="Absolute host path; must exist.")
    target: str = Field(description="Absolute path inside the container.")
    read_only: bool = Field(default=True, description="Mount read-only (the default).")

    @field_validator("source")
    @classmethod
    def _source_is_safe(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError(f"mount source {value} must be an absolute path")
        if not value.exists():
            raise ValueError(f"mount source {value} does not exist")
        if value.resolve() in _DOCKER_SOCKETS:
            raise ValueError("the Docker socket is never mounted into a container")
        return value

    @field_validator("target")
    @classmethod
    def _target_is_absolute(cls, value: str) -> str:
        if not PurePosixPath(value).is_absolute():
            raise ValueError(f"mount target {value} must be an absolute path")
        return value


class Limits(BaseModel):
    """Resource caps; swap is always equal to memory, so there is no swap."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    memory_mb: int = Field(default=512, ge=16, description="Memory cap, swap included.")
    cpus: float = Field(default=1.0, gt=0, le=64, description="CPU share, in cores.")
    pids: int = Field(default=256, ge=8, description="Most processes and threads at once.")
    tmpfs_mb: int = Field(default=64, ge=1, description="Size of each writable tmpfs.")
    log_max_mb: int = Field(default=5, ge=1, description="Cap of the engine's json-file log.")


class ContainerSpec(BaseModel):
    """Everything a caller may choose about a container; the hardening itself is not optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str
    command: list[str] = Field(min_length=1)
    run_id: str = Field(min_length=1, description="Labels the container so reconcile finds it.")
    role: Role
    instance: str = Field(
        default="default",
        min_length=1,
        description="Which supervisor owns it: reconcile can be limited to one instance's containers.",
    )
    mounts: list[Mount] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    workdir: str = "/tmp"
    user: str = Field(default="10001:10001", description="uid:gid; never root.")
    limits: Limits = Field(default_factory=Limits)
    tmpfs: list[str] = Field(default_factory=lambda: ["/tmp"], description="Writable tmpfs paths.")
    network: str | None = Field(default=None, description="Docker network; None means none.")
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("user")
    @classmethod
    def _not_root(cls, value: str) -> str:
        uid = value.split(":", 1)[0]
        if uid in {"0", "root", ""}:
            raise ValueError("containers never run as root")
        return value

    def all_labels(self) -> dict[str, str]:
        return {
            **self.labels,
            MANAGED_LABEL: "1",
            RUN_ID_LABEL: self.run_id,
            ROLE_LABEL: self.role,
            INSTANCE_LABEL: self.instance,
        }


class RunResult(BaseModel):
    """What a finished (or killed) container left behind."""

    model_config = ConfigDict(extra="forbid")

    exit_code: int | None = Field(description="None when the container was killed at its deadline.")
    timed_out: bool
    output: str = Field(description="stdout and stderr interleaved, head and tail kept past the cap.")
    output_bytes: int = Field(description="How many bytes the container printed in all.")
    truncated: bool
    duration_s: float
    container_id: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out
