"""The Docker engine, owned here: hardened runs with our own deadlines, and label-based cleanup."""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any, ParamSpec, TypeVar, cast

import docker
import docker.errors
import requests.exceptions
from docker.models.containers import Container
from docker.types import LogConfig, Ulimit
from docker.types import Mount as DockerMount

from sandbox import seccomp
from sandbox.errors import EngineAccessError, EngineUnavailableError, SandboxError
from sandbox.output import CappedBuffer
from sandbox.spec import INSTANCE_LABEL, MANAGED_LABEL, RUN_ID_LABEL, ContainerSpec, RunResult

# Anything the engine or its HTTP transport can throw at us.
DOCKER_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)

ENGINE_HELP = (
    "start one with `bash scripts/ensure-docker.sh` (installs Debian's docker.io and starts dockerd "
    "as root), or point DOCKER_HOST at a running engine"
)

_P = ParamSpec("_P")
_T = TypeVar("_T")


class AgentContainer(ABC):
    """A long-running container the caller stops and removes (what `Engine.start` returns)."""

    id: str

    @abstractmethod
    def output(self) -> Iterator[bytes]:
        """Output chunks until the container stops (the attach stream, never the engine's log file)."""

    @abstractmethod
    def wait(self, timeout_s: float) -> int | None:
        """The exit code; None if still running after timeout_s or the engine lost track of it."""

    @abstractmethod
    def is_running(self) -> bool: ...

    @abstractmethod
    def stop(self, grace_s: float = 10) -> None: ...

    @abstractmethod
    def remove(self) -> None: ...


class Engine(ABC):
    """What the supervisor needs from a container engine; `sandbox.fake.FakeEngine` is the test double."""

    @abstractmethod
    def run(self, spec: ContainerSpec, deadline_s: float, output_cap: int = 1_000_000) -> RunResult:
        """Run to completion or to the deadline; the container is always removed afterwards."""

    @abstractmethod
    def start(self, spec: ContainerSpec, *, attach: bool = False) -> AgentContainer:
        """Start a long-running container; `attach=True` attaches its output before it starts."""

    @abstractmethod
    def reconcile(
        self, instance: str | None = None, keep_run_ids: frozenset[str] | set[str] = frozenset()
    ) -> list[str]: ...

    @abstractmethod
    def ping(self) -> bool:
        """True if the engine answers now (cheap; used to wait out an engine restart)."""


class DockerEngine(Engine):
    """One Docker client pair: short calls time out, streams (logs, wait) do not.

    Streams may stay silent for as long as a container runs; their end is guaranteed by our own
    deadline, which kills the container, never by an HTTP read timeout.
    """

    def __init__(
        self,
        client: docker.DockerClient,
        stream_client: docker.DockerClient,
        fresh_client: Callable[[], docker.DockerClient] | None = None,
    ) -> None:
        self.client = client
        self._stream = stream_client
        version = client.api.api_version
        self._fresh_client = fresh_client or (lambda: docker.from_env(timeout=5, version=version))

    @classmethod
    def connect(cls, timeout_s: float = 60) -> DockerEngine:
        try:
            client = docker.from_env(timeout=int(timeout_s))
            client.ping()
            # docker-py accepts timeout=None (no read timeout); its stubs only admit an int.
            stream_client = docker.from_env(timeout=None)  # type: ignore[arg-type]
        except DOCKER_ERRORS as exc:
            if _caused_by_permission(exc):
                raise EngineAccessError(socket_permission_message(exc)) from exc
            raise EngineUnavailableError(f"no Docker engine answers ({exc}); {ENGINE_HELP}") from exc
        return cls(client, stream_client)

    def close(self) -> None:
        self.client.close()
        self._stream.close()

    def ping(self) -> bool:
        """Asked on a new connection. A stopping engine closes its listener first and goes on serving
        connections already open (it still has containers to stop), so an answer on a pooled
        connection would call an engine that is going away healthy, and the gate container it is
        killing the candidate's failure."""
        try:
            fresh = self._fresh_client()
        except DOCKER_ERRORS:
            return False
        try:
            return bool(fresh.ping())
        except DOCKER_ERRORS:
            return False
        finally:
            fresh.close()

    @property
    def long_api(self) -> docker.APIClient:
        """The low-level API without a read timeout, for calls that may stay silent for minutes
        (image builds, imports); only use it where something else bounds the call."""
        return self._stream.api

    # -- containers -------------------------------------------------------------------------

    def run(self, spec: ContainerSpec, deadline_s: float, output_cap: int = 1_000_000) -> RunResult:
        """Run to completion or to the deadline; the container is always removed afterwards."""
        started = time.monotonic()
        container = self._create(spec)
        buffer = CappedBuffer(output_cap)
        exit_holder: dict[str, int] = {}
        try:
            # Attach before start: the stream comes from the container's stdio, not from the engine's
            # size-capped log file, so nothing is lost to log rotation when the reader falls behind.
            output = self._call(
                lambda: self._stream.api.attach(_id(container), stdout=True, stderr=True, stream=True, logs=True)
            )
            self._call(container.start)
            reader = threading.Thread(target=self._drain, args=(output, buffer), daemon=True)
            waiter = threading.Thread(target=self._await_exit, args=(container.id, exit_holder), daemon=True)
            reader.start()
            waiter.start()
            waiter.join(timeout=max(0.0, deadline_s - (time.monotonic() - started)))
            timed_out = waiter.is_alive()
            if timed_out:
                self._kill(container)
                waiter.join(timeout=10)
            reader.join(timeout=5)
        finally:
            self._remove(container)
        exit_code = None if timed_out else exit_holder.get("code")
        if exit_code is None and not timed_out:
            raise SandboxError(f"container {container.short_id} ended without an exit status")
        return RunResult(
            exit_code=exit_code,
            timed_out=timed_out,
            output=buffer.text(),
            output_bytes=buffer.total,
            truncated=buffer.truncated,
            duration_s=time.monotonic() - started,
            container_id=_id(container),
        )

    def start(self, spec: ContainerSpec, *, attach: bool = False) -> RunningContainer:
        """Start a long-running container (the agent); the caller owns stopping it.

        `attach=True`: its output is attached before it starts (read it with `output()`, and do
        read it: an undrained attach stream can stall the container's writes). Unlike following the
        engine's log file, the attach stream is not cut when that size-capped file rotates.
        """
        container = self._create(spec)
        try:
            stream: Iterator[bytes] | None = None
            if attach:
                stream = self._call(
                    lambda: self._stream.api.attach(_id(container), stdout=True, stderr=True, stream=True, logs=True)
                )
            self._call(container.start)
        except SandboxError:
            self._remove(container)
            raise
        return RunningContainer(self, _id(container), stream)

    def reconcile(
        self, instance: str | None = None, keep_run_ids: frozenset[str] | set[str] = frozenset()
    ) -> list[str]:
        """Remove containers carrying our label (of one instance, if named), except kept runs."""
        removed = []
        found = self._list_managed(instance)
        for container in found:
            if container.labels.get(RUN_ID_LABEL) in keep_run_ids:
                continue
            self._remove(container)
            removed.append(_id(container))
        return removed

    def managed(self, instance: str | None = None) -> list[dict[str, str]]:
        """Our containers (of one instance, if named): id, name, status and labels, for listing."""
        found = self._list_managed(instance)
        return [{"id": _id(c), "name": cast(str, c.name), "status": c.status, **c.labels} for c in found]

    def remove_managed(self, container_id: str) -> bool:
        """Remove one container, only if it still carries our label; False if it is already gone."""
        try:
            container = self.client.containers.get(container_id)
        except docker.errors.NotFound:
            return False
        except DOCKER_ERRORS as exc:
            raise SandboxError(f"could not look up container {container_id[:12]}: {exc}") from exc
        if container.labels.get(MANAGED_LABEL) != "1":
            return False
        self._remove(container)
        return True

    def inspect(self, container_id: str) -> dict[str, Any]:
        return self._call(self.client.api.inspect_container, container_id)

    def exists(self, container_id: str) -> bool:
        try:
            self.client.api.inspect_container(container_id)
        except docker.errors.NotFound:
            return False
        return True

    # -- internals --------------------------------------------------------------------------

    def _list_managed(self, instance: str | None) -> list[Container]:
        """Our containers as they are now. The engine lists, then each one is inspected: one that a
        run removes in between (every run removes its container at its end) is left out rather than
        failing the whole listing with "No such container"."""
        labels = [f"{MANAGED_LABEL}=1"] + ([f"{INSTANCE_LABEL}={instance}"] if instance else [])
        return self._call(self.client.containers.list, all=True, filters={"label": labels}, ignore_removed=True)

    def _create(self, spec: ContainerSpec) -> Container:
        return self._call(self.client.containers.create, **hardened_create_args(spec))

    def _drain(self, output: Iterator[bytes], buffer: CappedBuffer) -> None:
        try:
            for chunk in output:
                buffer.write(chunk)
        except DOCKER_ERRORS:
            pass  # the container was removed under us: what we have is what it printed

    def _await_exit(self, container_id: str, holder: dict[str, int]) -> None:
        try:
            holder["code"] = self._stream.api.wait(container_id)["StatusCode"]
        except DOCKER_ERRORS:
            pass

    def _kill(self, container: Container) -> None:
        try:
            container.kill()
        except DOCKER_ERRORS:
            pass  # already gone or already stopped: removal below settles it

    def _remove(self, container: Container) -> None:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            # Another remover got there first (a run's own end, a second reconcile, an operator's
            # clean-up): the engine answers 409 while it removes it. It is going either way.
            if exc.status_code == 409 and "already in progress" in str(exc.explanation or ""):
                return
            raise SandboxError(f"could not remove container {container.short_id}: {exc}") from exc
        except DOCKER_ERRORS as exc:
            raise SandboxError(f"could not remove container {container.short_id}: {exc}") from exc

    @staticmethod
    def _call(function: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return function(*args, **kwargs)
        except docker.errors.ImageNotFound as exc:
            raise SandboxError(f"image not found ({exc.explanation}); build it with `supervisor image build`") from exc
        except DOCKER_ERRORS as exc:
            raise SandboxError(f"Docker engine error: {exc}") from exc


class RunningContainer(AgentContainer):
    """A handle on a long-running container; stopping and removing are explicit."""

    def __init__(self, engine: DockerEngine, container_id: str, attached: Iterator[bytes] | None = None) -> None:
        self.engine = engine
        self.id = container_id
        self._attached = attached

    def output(self) -> Iterator[bytes]:
        """Output chunks until the container stops: from the attach made before start, else from
        an attach made now (output printed before this call is not repeated)."""
        try:
            stream = self._attached or self.engine._stream.api.attach(self.id, stdout=True, stderr=True, stream=True)
            self._attached = None
            yield from stream
        except DOCKER_ERRORS:
            return

    def follow_logs(self) -> Iterator[bytes]:
        """Yield output chunks until the container stops (or is removed)."""
        try:
            yield from self.engine._stream.api.logs(self.id, stream=True, follow=True)
        except DOCKER_ERRORS:
            return

    def wait(self, timeout_s: float) -> int | None:
        """The exit code, or None if it is still running after timeout_s."""
        holder: dict[str, int] = {}
        waiter = threading.Thread(target=self.engine._await_exit, args=(self.id, holder), daemon=True)
        waiter.start()
        waiter.join(timeout_s)
        return holder.get("code")

    def is_running(self) -> bool:
        try:
            state = self.engine.client.api.inspect_container(self.id)["State"]
        except docker.errors.NotFound:
            return False
        except DOCKER_ERRORS as exc:
            raise SandboxError(f"Docker engine error: {exc}") from exc
        return bool(state.get("Running"))

    def stop(self, grace_s: float = 10) -> None:
        """SIGTERM, then SIGKILL after grace_s (the engine does both)."""
        try:
            self.engine.client.api.stop(self.id, timeout=int(grace_s))
        except docker.errors.NotFound:
            pass
        except DOCKER_ERRORS as exc:
            raise SandboxError(f"could not stop container {self.id[:12]}: {exc}") from exc

    def remove(self) -> None:
        try:
            self.engine.client.api.remove_container(self.id, force=True)
        except docker.errors.NotFound:
            pass
        except DOCKER_ERRORS as exc:
            raise SandboxError(f"could not remove container {self.id[:12]}: {exc}") from exc


def _id(container: Container) -> str:
    """A container the engine created or listed always carries its Id; the stubs allow None only
    for models built from partial attributes, which we never make."""
    return cast(str, container.id)


def _caused_by_permission(exc: BaseException) -> bool:
    """docker-py wraps the socket's EACCES several layers deep (requests, urllib3); look through them."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, PermissionError) or "Permission denied" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def socket_permission_message(exc: BaseException) -> str:
    import getpass
    import grp
    import os

    socket = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock").removeprefix("unix://")
    try:
        group = grp.getgrgid(os.stat(socket).st_gid).gr_name
    except (OSError, KeyError):
        group = "docker"
    user = getpass.getuser()
    return (
        f"a Docker engine is there but {user} may not use its socket {socket} ({exc}); add {user} to the "
        f"`{group}` group (`sudo usermod -aG {group} {user}`, then log in again) or run as root"
    )


def hardened_create_args(spec: ContainerSpec) -> dict[str, Any]:
    """The one place the hardening policy is written down; every container goes through it."""
    limits = spec.limits
    tmpfs_options = f"rw,nosuid,nodev,size={limits.tmpfs_mb}m"
    return dict(
        image=spec.image,
        command=spec.command,
        user=spec.user,
        working_dir=spec.workdir,
        environment=dict(spec.env),
        labels=spec.all_labels(),
        detach=True,
        init=True,
        read_only=True,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges:true", f"seccomp={seccomp.profile_json()}"],
        tmpfs={path: tmpfs_options for path in spec.tmpfs},
        mem_limit=f"{limits.memory_mb}m",
        memswap_limit=f"{limits.memory_mb}m",
        nano_cpus=int(limits.cpus * 1e9),
        pids_limit=limits.pids,
        ulimits=[Ulimit(name="nofile", soft=1024, hard=1024)],
        network_mode=spec.network or "none",
        mounts=[
            DockerMount(target=m.target, source=str(m.source), type="bind", read_only=m.read_only) for m in spec.mounts
        ],
        log_config=LogConfig(type="json-file", config={"max-size": f"{limits.log_max_mb}m", "max-file": "1"}),
    )
