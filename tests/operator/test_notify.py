"""Notifications: decisions and budget thresholds reach a real local HTTP receiver and a command;
a slow or failing hook never blocks the caller."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sandbox.fake import FakeEngine
from supervisor.cli.log_lines import lines_to
from supervisor.loop import notify
from supervisor.loop.context import LoopContext, StopFlag
from supervisor.loop.notify import NotifyEvent, NotifySettings, Sender
from supervisor.route.ledger import LEDGER_FILE_NAME, LedgerEntry
from supervisor.route.pricing import Usage
from supervisor.store.decision_log import DecisionLog
from supervisor.store.instance import Instance, InstanceConfig


class Receiver:
    """A real HTTP server on 127.0.0.1 that records POST bodies (and can be made slow)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(delay_s)
                outer.bodies.append(json.loads(body))
                outer.headers.append(dict(self.headers))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 15) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.bodies) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.bodies


@pytest.fixture
def receiver():
    made = Receiver()
    yield made
    made.server.shutdown()


def _config(instance: Instance, **notify_settings) -> InstanceConfig:
    base = instance.config().model_dump()
    base["notify"] = notify_settings
    base["route"]["caps"] = {"per_day": {"usd": "1"}, "per_cycle": {}, "total": {}}
    return InstanceConfig.model_validate(base)


def _context(instance: Instance, config: InstanceConfig) -> LoopContext:
    return LoopContext(instance, config, FakeEngine(), StopFlag())


def _spend(instance: Instance, usd: str) -> None:
    entry = LedgerEntry(
        ts=datetime.now(UTC),
        run_id="r",
        cycle="c1",
        model="m",
        stream=False,
        status=200,
        complete=True,
        usage=Usage(input_tokens=10),
        cost_usd=Decimal(usd),
    )
    with open(instance.state / LEDGER_FILE_NAME, "a") as handle:
        handle.write(entry.model_dump_json() + "\n")


def test_decisions_and_budget_thresholds_reach_webhook_and_command(
    instance: Instance, receiver, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(notify, "POLL_S", 0.1)
    log = DecisionLog(instance.state / "decisions.jsonl")
    log.append("accepted", candidate="0-1", commit="a" * 40, generation=1)  # history: not announced
    _spend(instance, "0.85")  # already past 80 % at start: not announced again
    out = tmp_path / "command-got.jsonl"
    config = _config(
        instance,
        webhook=receiver.url,
        headers={"Authorization": "Bearer t"},
        command=["sh", "-c", f"cat >> {out}; echo >> {out}"],
    )
    watcher = notify.start(_context(instance, config))
    try:
        log.append("needs-approval", candidate="1-1", commit="b" * 40, reasons=["changes tests"])
        log.append("gave-up", commit="b" * 40, details={"reason": "crash loop"})
        _spend(instance, "0.06")  # 91 %
        _spend(instance, "0.10")  # 101 %
        bodies = receiver.wait_for(4)
    finally:
        watcher.stop()
    events = [NotifyEvent.model_validate(body) for body in bodies]
    assert [e.event for e in events] == ["needs-approval", "gave-up", "budget", "budget"]
    assert events[0].candidate == "1-1" and events[0].reasons == ["changes tests"]
    assert events[1].message == "crash loop" and events[0].at.utcoffset().total_seconds() == 0
    assert [e.budget.threshold for e in events[2:]] == [90, 100] and events[3].budget.scope == "day"
    assert all(set(body) == set(NotifyEvent.model_fields) for body in bodies)
    assert receiver.headers[0]["Authorization"] == "Bearer t"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 4):
        time.sleep(0.05)
    assert [json.loads(line)["event"] for line in out.read_text().splitlines()] == [e.event for e in events]
    assert json.loads((instance.run_dir / "notify.json").read_text())["decision_seq"] == 3


def test_a_restart_resumes_after_the_last_decision_it_handed_on(instance: Instance, receiver, monkeypatch) -> None:
    monkeypatch.setattr(notify, "POLL_S", 0.1)
    log = DecisionLog(instance.state / "decisions.jsonl")
    log.append("rejected", candidate="0-1")
    instance.run_dir.mkdir(exist_ok=True)
    (instance.run_dir / "notify.json").write_text(json.dumps({"decision_seq": 0}))  # crashed before seq 1 went out
    watcher = notify.start(_context(instance, _config(instance, webhook=receiver.url)))
    try:
        assert [b["event"] for b in receiver.wait_for(1)] == ["rejected"]
    finally:
        watcher.stop()


def test_a_slow_or_failing_hook_never_blocks_and_never_raises(tmp_path: Path) -> None:
    slow = Receiver(delay_s=5)
    messages: list[str] = []
    try:
        sender = Sender(NotifySettings(webhook=slow.url, queue_size=3, timeout_s=1)).start()
        event = NotifyEvent(event="rejected", at=datetime.now(UTC), instance=str(tmp_path))
        started = time.monotonic()
        for _ in range(50):
            sender.offer(event)
        assert time.monotonic() - started < 0.5  # offering is instant however slow the hook
        assert sender.dropped >= 40 and sender.queue.qsize() <= 3
    finally:
        slow.server.shutdown()
    failing = Sender(NotifySettings(webhook="http://127.0.0.1:9/none", command=["false"], timeout_s=1)).start()
    with lines_to(messages.append):
        failing.offer(NotifyEvent(event="gave-up", at=datetime.now(UTC), instance=str(tmp_path)))
        deadline = time.monotonic() + 10
        while failing.failed < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert failing.failed == 2 and any("not delivered" in m for m in messages)
    assert failing._thread.is_alive()


def test_notify_config_is_strict() -> None:
    with pytest.raises(ValueError):
        NotifySettings(webhook="file:///etc/passwd")
    with pytest.raises(ValueError):
        NotifySettings.model_validate({"webhook": "https://x", "evnets": ["budget"]})
    assert not NotifySettings().enabled and NotifySettings(command=["true"]).enabled
