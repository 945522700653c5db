"""The console of a stopped instance shows it stopped: not "running" (the file a kill -9 leaves) and
never "on probation"; with a supervisor holding the lock it shows what the supervisor published."""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from supervisor.console.server import ConsoleServer, make_server
from supervisor.store.instance import Instance
from supervisor.store.states import SupervisorState
from supervisor.store.status_file import Status, StatusFile

from .helpers import synthetic_instance


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    synthetic_instance(home, 3)
    return home


@pytest.fixture
def server(home: Path) -> Iterator[ConsoleServer]:
    server = make_server(home, "127.0.0.1:0")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _record(home: Path, state: SupervisorState) -> Instance:
    instance = Instance.locate(home)
    instance.status_file.parent.mkdir(parents=True, exist_ok=True)
    assert StatusFile(instance.status_file).write(Status(state=state, generation=3, probation="on probation"))
    return instance


def _row(page: str, name: str) -> str:
    """The value the status table shows for `name`."""
    return page.split(f"<td>{name}</td><td>", 1)[1].split("</td>", 1)[0]


def _current_state(server: ConsoleServer) -> str:
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(server.url + "metrics").text)}
    return next(s.labels["state"] for s in families["ouroboros_state"].samples if s.value == 1)


@pytest.mark.parametrize("left", [SupervisorState.RUNNING, SupervisorState.STOPPED])
def test_a_stopped_instance_is_shown_stopped(home: Path, server: ConsoleServer, left: SupervisorState) -> None:
    _record(home, left)
    page = httpx.get(server.url).text
    assert "on probation" not in page and _row(page, "probation") == "n/a"
    assert _row(page, "state") == "stopped" and _row(page, "uptime") == ""
    assert _current_state(server) == "stopped"


def test_a_running_instance_shows_its_probation(home: Path, server: ConsoleServer) -> None:
    instance = _record(home, SupervisorState.RUNNING)
    instance.run_dir.mkdir(parents=True, exist_ok=True)
    with open(instance.run_dir / "supervisor.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        page = httpx.get(server.url).text
        assert _row(page, "probation") == "on probation" and _row(page, "state") == "running"
        assert _row(page, "uptime") != ""
        assert _current_state(server) == "running"
