"""A fake container engine for fast tests of the logic above `sandbox` (SWE-ReX's dummy deployment).

Nothing here starts a process: a gate run answers with a scripted `RunResult` (by default a passing
JUnit report printed between the run's markers, exactly as the real gate wrapper does), and an agent
"container" runs a Python callable in a thread with the container's mounts. `go_down()` and
`come_back()` simulate an engine restart: running containers end with no exit status and every
call fails until the engine is back. Integration tests still use the real engine; this is only for
decisions (restart, adopt, retry, record) that do not depend on what Docker does.
"""

from __future__ import annotations

import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator

from sandbox.engine import AgentContainer, Engine
from sandbox.errors import EngineUnavailableError, SandboxError
from sandbox.spec import ContainerSpec, RunResult

PASSING_REPORT = (
    '<?xml version="1.0"?><testsuites><testsuite name="fake" tests="1">'
    '<testcase classname="tests.test_fake" name="test_ok"/></testsuite></testsuites>'
)
GateScript = Callable[[ContainerSpec], RunResult]
AgentScript = Callable[["FakeContainer"], int]


def gate_output(spec: ContainerSpec, report: str = PASSING_REPORT, before: str = "1 passed\n") -> str:
    """What the gate wrapper prints: the test output, then the report between the run's markers."""
    return f"{before}\n{spec.env['OUROBOROS_BEGIN']}\n{report}\n{spec.env['OUROBOROS_END']}\n"


def passing_gate(spec: ContainerSpec) -> RunResult:
    return RunResult(
        exit_code=0,
        timed_out=False,
        output=gate_output(spec),
        output_bytes=0,
        truncated=False,
        duration_s=0.01,
        container_id=uuid.uuid4().hex,
    )


class FakeContainer(AgentContainer):
    """An agent run: `script(self)` runs in a thread until it returns an exit code or `stopped` is set."""

    def __init__(self, engine: FakeEngine, spec: ContainerSpec, script: AgentScript | None) -> None:
        self.engine = engine
        self.spec = spec
        self.id = uuid.uuid4().hex
        self.stopped = threading.Event()
        self.exit_code: int | None = None
        self.lost = False  # the engine went away under it: no exit status will ever come
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(script,), daemon=True)
        self._thread.start()

    def mount(self, target: str) -> str:
        """The host path mounted at `target` (e.g. "/workspace", "/ouroboros/outbox")."""
        return next(str(m.source) for m in self.spec.mounts if m.target == target)

    def _run(self, script: AgentScript | None) -> None:
        code = script(self) if script is not None else (self.stopped.wait() and 137)
        self.exit_code = (143 if self.engine.down else 137) if self.stopped.is_set() else int(code)
        self._done.set()

    def output(self) -> Iterator[bytes]:
        self._done.wait()
        return iter(())

    def wait(self, timeout_s: float) -> int | None:
        self._done.wait(timeout_s if timeout_s < 86400 else None)
        return None if self.lost else self.exit_code

    def is_running(self) -> bool:
        self.engine.check()
        return not self._done.is_set()

    def stop(self, grace_s: float = 10) -> None:
        self.engine.check()
        self.stopped.set()
        self._done.wait(5)

    def remove(self) -> None:
        self.engine.check()
        self.stopped.set()
        self.engine.containers.pop(self.id, None)


class FakeEngine(Engine):
    """Scripted gate results and agent threads; `calls` records every gate spec it was asked to run."""

    def __init__(self, gate: GateScript = passing_gate, agent: AgentScript | None = None) -> None:
        self.gate = gate
        self.agent = agent
        self.down = False
        self.containers: dict[str, FakeContainer] = {}
        self.calls: deque[ContainerSpec] = deque(maxlen=100)  # the last gate specs, for assertions
        self.lock = threading.Lock()

    def check(self) -> None:
        if self.down:
            raise EngineUnavailableError("fake engine is down")

    def ping(self) -> bool:
        return not self.down

    def run(self, spec: ContainerSpec, deadline_s: float, output_cap: int = 1_000_000) -> RunResult:
        self.check()
        self.calls.append(spec)
        result = self.gate(spec)
        if self.down:  # the script took the engine down mid-run
            raise SandboxError("container ended without an exit status (fake engine went down)")
        return result

    def start(self, spec: ContainerSpec, *, attach: bool = False) -> FakeContainer:
        self.check()
        container = FakeContainer(self, spec, self.agent)
        with self.lock:
            self.containers[container.id] = container
        return container

    def reconcile(
        self, instance: str | None = None, keep_run_ids: frozenset[str] | set[str] = frozenset()
    ) -> list[str]:
        self.check()
        removed = []
        for container in list(self.containers.values()):
            if (instance is None or container.spec.instance == instance) and container.spec.run_id not in keep_run_ids:
                container.stopped.set()
                self.containers.pop(container.id, None)
                removed.append(container.id)
        return removed

    def running(self, instance: str | None = None) -> list[FakeContainer]:
        return [c for c in self.containers.values() if instance is None or c.spec.instance == instance]

    def go_down(self, stops_containers: bool = False) -> None:
        """An engine restart begins: every call fails. Its containers die without an exit status (the
        engine vanished), or, with `stops_containers`, with 143 as a stopping dockerd leaves them (it
        closes its API first, then stops each container with SIGTERM)."""
        self.down = True
        for container in list(self.containers.values()):
            container.lost = not stops_containers
            container.stopped.set()
        self.containers.clear()

    def come_back(self) -> None:
        self.down = False
