"""A generation's time alive is the time its agent ran, from the real records through the real store:
not the time it was main, and never time in which no supervisor ran."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from supervisor.console.view import InstanceView
from supervisor.route.ledger import LEDGER_FILE_NAME, Ledger
from supervisor.store import decision_log
from supervisor.store.decision_log import DecisionLog
from supervisor.store.instance import Instance
from supervisor.store.scorecard import ScorecardStore
from supervisor.store.states import SupervisorState
from supervisor.store.status_file import Status, StatusFile

from .helpers import entry, sha, synthetic_instance

HOUR = 3600.0


class Clock:
    """The decision log's clock, set by the test: each record is written at a chosen time."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.at = datetime.now(UTC)
        monkeypatch.setattr(decision_log, "now", lambda: self.at)

    def set(self, seconds_ago: float) -> datetime:
        self.at = datetime.now(UTC) - timedelta(seconds=seconds_ago)
        return self.at


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    synthetic_instance(home, 0)  # a bare repository and generation 0 (genesis), written now
    return home


def _log(home: Path) -> DecisionLog:
    return DecisionLog(home / "repo.git" / "ouroboros" / "decisions.jsonl")


def _request(home: Path, at: datetime) -> None:
    ledger = Ledger.open(home / "repo.git" / "ouroboros" / LEDGER_FILE_NAME)
    try:
        ledger.append(entry(at, "cycle-1"))
    finally:
        ledger.close()


@contextmanager
def _running_supervisor(home: Path, started_seconds_ago: float) -> Iterator[None]:
    """status.json and the lock of a supervisor that runs now and started that long ago."""
    instance = Instance.locate(home)
    instance.run_dir.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC) - timedelta(seconds=started_seconds_ago)
    StatusFile(instance.status_file).write(Status(state=SupervisorState.RUNNING, started_at=started, generation=0))
    with open(instance.run_dir / "supervisor.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield


def _alive(home: Path, generation: int = 0) -> float:
    view = InstanceView(Instance.locate(home))
    view.refresh()
    card = view.store.card(generation)
    assert card is not None
    return card.alive_s


def test_an_agent_that_ran_ten_seconds_before_an_hour_stopped_was_alive_ten_seconds(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock, log = Clock(monkeypatch), _log(home)
    clock.set(HOUR + 10)
    log.append("agent-started", commit=sha(0), generation=0, details={"run_id": "r1"})
    clock.set(HOUR)
    log.append("agent-stopped", details={"run_id": "r1", "exit_code": None})  # `supervisor stop`
    assert _alive(home) == pytest.approx(10, abs=0.01)
    with _running_supervisor(home, started_seconds_ago=60):  # started again a minute ago, no agent yet
        assert _alive(home) == pytest.approx(10, abs=0.01)


def test_a_run_whose_end_was_never_recorded_counts_to_its_last_request(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A supervisor killed (or an older one that did not record a stop): no end record, no lock."""
    clock, log = Clock(monkeypatch), _log(home)
    started = clock.set(HOUR + 10)
    log.append("agent-started", commit=sha(0), generation=0, details={"run_id": "r1"})
    _request(home, started + timedelta(seconds=4))
    _request(home, started + timedelta(seconds=10))
    assert _alive(home) == pytest.approx(10, abs=0.01)
    with _running_supervisor(home, started_seconds_ago=60):  # a new supervisor: the old run is not its
        assert _alive(home) == pytest.approx(10, abs=0.01)
    clock.set(30)
    log.append("agent-started", commit=sha(0), generation=0, details={"run_id": "r2"})  # the new one's agent
    clock.set(20)
    log.append("agent-crashed", commit=sha(0), generation=0, details={"exit_code": 1})
    assert _alive(home) == pytest.approx(20, abs=0.01)  # 10 s of the first run, 10 s of the second


def test_the_run_of_the_supervisor_running_now_counts_up_to_now(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock, log = Clock(monkeypatch), _log(home)
    clock.set(100)
    log.append("agent-started", commit=sha(0), generation=0, details={"run_id": "r1"})
    with _running_supervisor(home, started_seconds_ago=120):
        assert _alive(home) == pytest.approx(100, abs=5)
    assert _alive(home) == pytest.approx(0, abs=0.01)  # stopped without a record, no request: nothing known


def test_time_as_main_is_not_time_alive(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Generation 0 was main for an hour before generation 1 was accepted; its agent ran 5 s of it."""
    clock, log = Clock(monkeypatch), _log(home)
    clock.set(2 * HOUR)
    log.append("agent-started", commit=sha(0), generation=0, details={"run_id": "r1"})
    clock.set(2 * HOUR - 5)
    log.append("agent-stopped", details={"run_id": "r1", "exit_code": None})
    clock.set(HOUR)
    log.append("accepted", candidate="0-1", commit=sha(1), main_before=sha(0), main_after=sha(1), generation=1)
    assert _alive(home, 0) == pytest.approx(5, abs=0.01)
    assert _alive(home, 1) == 0


def test_a_store_that_counted_time_as_main_is_recounted(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock, log = Clock(monkeypatch), _log(home)
    clock.set(HOUR + 10)
    log.append("agent-started", commit=sha(0), generation=0, details={"run_id": "r1"})
    clock.set(HOUR)
    log.append("agent-stopped", details={"run_id": "r1", "exit_code": None})
    store = ScorecardStore(home / "repo.git" / "ouroboros")
    store.update()
    with store.session() as db:  # what an older release left: its own alive_s, no rule recorded
        db.execute("UPDATE generations SET alive_s=? WHERE n=0", (HOUR,))
        db.execute("DELETE FROM meta WHERE key='alive_rule'")
    store.close()
    assert _alive(home) == pytest.approx(10, abs=0.01)
