"""Fixtures for end-to-end runs of the supervisor: real Docker, real git, the scripted model."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from supervisor.gate.gatekeeper import Gatekeeper
from supervisor.store.instance import Instance
from supervisor.store.instance_init import init_instance, package_dir

SUPERVISOR = [sys.executable, "-m", "supervisor"]


def scenario(name: str) -> Path:
    return package_dir("scripted_model") / "scenarios" / name


@pytest.fixture
def make_instance(tmp_path, docker_engine, agent_image):
    """An initialised instance with generation 0 gated; its containers are removed afterwards."""
    made: list[Instance] = []

    def make(scenario_path: Path, max_cycles: int | None = None, extra_config: str = "") -> Instance:
        instance = init_instance(
            tmp_path / f"home{len(made)}", scenario_path, max_cycles=max_cycles, model="claude-sonnet-5-5"
        )
        if extra_config:
            instance.config_path.write_text(instance.config_path.read_text() + "\n" + extra_config)
        gatekeeper_of(instance, docker_engine, agent_image).genesis()
        made.append(instance)
        return instance

    yield make
    for instance in made:
        docker_engine.reconcile(instance=instance.instance_id)


def gatekeeper_of(instance: Instance, engine, image: str) -> Gatekeeper:
    return Gatekeeper(
        instance.repo, engine=engine, journal_root=instance.journal, image=image, instance=instance.instance_id
    )


def containers_of(engine, instance: Instance) -> list:
    # ignore_removed: a run's container removed between the engine's listing and its inspection is gone, not an error
    return engine.client.containers.list(
        all=True, filters={"label": f"io.ouroboros.instance={instance.instance_id}"}, ignore_removed=True
    )


def wait_until(predicate, timeout: float, every: float = 0.2) -> bool:
    """Poll `predicate` until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


def journal_by_file(instance: Instance) -> dict[str, list[str]]:
    """The `## <timestamp> <kind>` headings of each journal file, in file order."""
    return {
        str(path.relative_to(instance.journal)): [
            line for line in path.read_text().splitlines() if re.match(r"^## \d{4}-", line)
        ]
        for path in sorted(instance.journal.rglob("*.md"))
    }


def journal_entries(instance: Instance) -> list[str]:
    """Every `## <timestamp> <kind>` heading in the memory journal, in file order."""
    headings = []
    for path in sorted(instance.journal.rglob("*.md")):
        headings += [line for line in path.read_text().splitlines() if re.match(r"^## \d{4}-", line)]
    return headings


class SupervisorProcess:
    """`supervisor start` as a real child process, its progress lines readable as they come."""

    def __init__(self, instance: Instance) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("ANTHROPIC_API_KEY", None)
        self.process = subprocess.Popen(
            [*SUPERVISOR, "start", "--home", str(instance.home)],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if re.search(pattern, line):
                return line
        raise AssertionError(f"no line matching {pattern!r}; saw:\n" + "\n".join(self.seen[-40:]))

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def terminate(self, timeout: float = 60) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)


@pytest.fixture
def start_supervisor():
    started: list[SupervisorProcess] = []

    def start(instance: Instance) -> SupervisorProcess:
        process = SupervisorProcess(instance)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.process.poll() is None:
            process.kill9()
