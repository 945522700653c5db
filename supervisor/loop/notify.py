"""Tell the operator when to act: a webhook and/or a command on decisions and budget thresholds.

The source is what the supervisor already writes, append-only: the decision log (needs-approval,
accepted, rejected, rollback, gave-up) and the LLM ledger (spend against the caps: 80, 90 and
100 %). A watcher thread reads only what was appended since it last looked; a sender thread
delivers from a bounded queue. A slow or failing hook therefore never blocks the decision loop
and never crashes the supervisor: when the queue is full the oldest event is dropped and counted.

Where it resumes: HOME/run/notify.json keeps the last decision seq handed to the sender, so a
restart neither repeats old notifications nor (after a crash) skips new ones; budget thresholds
already crossed when the watcher starts are not announced again.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import threading
import urllib.request
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from supervisor.store.decision_kinds import DecisionKind, known
from supervisor.store.instance import EventName, NotifySettings

if TYPE_CHECKING:
    from supervisor.loop.context import LoopContext
    from supervisor.route.config import Caps
    from supervisor.route.metering import CapStatus

DECISION_EVENTS: dict[DecisionKind, EventName] = {
    DecisionKind.NEEDS_APPROVAL: "needs-approval",
    DecisionKind.ACCEPTED: "accepted",
    DecisionKind.REJECTED: "rejected",
    DecisionKind.ROLLBACK: "rolled-back",
    DecisionKind.GAVE_UP: "gave-up",
}
log = logging.getLogger(__name__)
THRESHOLDS = (Decimal("0.8"), Decimal("0.9"), Decimal("1"))
POLL_S = 2.0


class BudgetMark(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: str
    key: str
    unit: str
    spent: str
    cap: str
    threshold: int = Field(description="80, 90 or 100 (percent).")


class NotifyEvent(BaseModel):
    """The JSON body of every notification (webhook POST body; the command's stdin). All keys always present."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    event: EventName
    at: datetime = Field(description="When it happened (UTC).")
    instance: str = Field(description="The instance directory.")
    candidate: str | None = None
    generation: int | None = None
    commit: str | None = None
    reasons: list[str] = Field(default_factory=list)
    message: str = ""
    budget: BudgetMark | None = None


class _Skip(Exception):
    """This kind of hook is not configured."""


class Sender:
    """Delivers events on its own thread; `offer` never blocks."""

    def __init__(self, settings: NotifySettings) -> None:
        self.settings = settings
        self.queue: queue.Queue[NotifyEvent] = queue.Queue(maxsize=settings.queue_size)
        self.sent = self.failed = self.dropped = 0
        self.last_error = ""
        self._thread = threading.Thread(target=self._run, name="ouroboros-notify-send", daemon=True)

    def start(self) -> Sender:
        self._thread.start()
        return self

    def offer(self, event: NotifyEvent) -> None:
        if event.event not in self.settings.events:
            return
        while True:
            try:
                self.queue.put_nowait(event)
                return
            except queue.Full:
                try:
                    self.queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def _run(self) -> None:
        while True:
            event = self.queue.get()
            body = event.model_dump_json().encode()
            for deliver in (self._post, self._run_command):
                try:
                    deliver(body)
                    self.sent += 1
                except _Skip:
                    continue
                except Exception as exc:  # a hook's failure is the operator's to see, never ours to die of
                    self.failed += 1
                    self.last_error = f"{deliver.__name__.strip('_')}: {exc}"[:300]
                    log.warning("notification %s not delivered (%s)", event.event, self.last_error)

    def _post(self, body: bytes) -> None:
        if not self.settings.webhook:
            raise _Skip
        request = urllib.request.Request(
            self.settings.webhook,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "ouroboros-supervisor", **self.settings.headers},
        )
        with urllib.request.urlopen(request, timeout=self.settings.timeout_s) as response:
            response.read(65536)

    def _run_command(self, body: bytes) -> None:
        if not self.settings.command:
            raise _Skip
        done = subprocess.run(
            self.settings.command,
            input=body,
            capture_output=True,
            timeout=self.settings.timeout_s,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"exit {done.returncode}: {done.stderr.decode(errors='replace').strip()[:200]}")


class Watcher:
    """Reads what was appended to the decision log and the ledger, and offers events to the sender."""

    def __init__(
        self,
        *,
        home: Path,
        decisions: Path,
        ledger: Path,
        caps: Caps,
        state_file: Path,
        sender: Sender,
    ) -> None:
        from supervisor.route.ledger import LedgerTotals

        self.home, self.decisions, self.ledger, self.caps = home, decisions, ledger, caps
        self.state_file, self.sender = state_file, sender
        self._offsets = {decisions: 0, ledger: 0}
        self._seq = self._saved_seq()
        self._totals = LedgerTotals()
        self._cycle: str | None = None
        self._crossed: set[tuple[str, str, str, Decimal]] = set()
        self._stop = threading.Event()

    def start(self) -> Watcher:
        self.poll(announce_budget=False)  # what was crossed before we started is old news
        threading.Thread(target=self._run, name="ouroboros-notify-watch", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                self.poll()
            except Exception as exc:  # never take the supervisor down; try again next time
                log.warning("notifications: could not read the logs (%s)", exc)

    def poll(self, announce_budget: bool = True) -> None:
        self._read_decisions()
        self._read_ledger(announce_budget)

    def _new_lines(self, path: Path) -> list[bytes]:
        try:
            with open(path, "rb") as handle:
                handle.seek(self._offsets[path])
                data = handle.read()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next look
        self._offsets[path] += len(complete)
        return [line for line in complete.split(b"\n") if line.strip()]

    def _read_decisions(self) -> None:
        first = self._seq is None
        for line in self._new_lines(self.decisions):
            try:
                record = json.loads(line)
                seq = int(record["seq"])
            except (ValueError, KeyError, TypeError):
                continue
            if self._seq is not None and seq <= self._seq:
                continue
            self._seq = seq
            kind = known(str(record.get("kind")))
            event = DECISION_EVENTS.get(kind) if kind is not None else None
            if event and not first:
                self.sender.offer(self._decision_event(event, record))
        if first and self._seq is None:
            self._seq = 0
        self._save_seq()

    def _decision_event(self, event: EventName, record: dict[str, Any]) -> NotifyEvent:
        raw = record.get("details")
        details: dict[str, Any] = raw if isinstance(raw, dict) else {}
        message = str(details.get("reason") or details.get("summary") or "")
        generation = record.get("generation")
        return NotifyEvent(
            event=event,
            at=_parse_time(record.get("at")),
            instance=str(self.home),
            candidate=record.get("candidate"),
            commit=record.get("commit"),
            generation=generation if isinstance(generation, int) else None,
            reasons=[str(r) for r in record.get("reasons") or []][:20],
            message=message[:2000],
        )

    def _read_ledger(self, announce: bool) -> None:
        from supervisor.route.ledger import LedgerEntry
        from supervisor.route.metering import cap_statuses

        for line in self._new_lines(self.ledger):
            try:
                entry = LedgerEntry.model_validate_json(line)
            except (ValidationError, ValueError):
                continue
            self._totals.add(entry)
            self._cycle = entry.cycle
        day = datetime.now(UTC).date().isoformat()
        for status in cap_statuses(self._totals, self.caps, self._cycle, day):
            for threshold in THRESHOLDS:
                mark = (status.scope, status.key, status.unit, threshold)
                if status.cap > 0 and status.spent >= status.cap * threshold and mark not in self._crossed:
                    self._crossed.add(mark)
                    if announce:
                        self.sender.offer(self._budget_event(status, threshold))

    def _budget_event(self, status: CapStatus, threshold: Decimal) -> NotifyEvent:
        percent = int(threshold * 100)
        mark = BudgetMark(
            scope=status.scope,
            key=status.key,
            unit=status.unit,
            spent=str(status.spent),
            cap=str(status.cap),
            threshold=percent,
        )
        return NotifyEvent(
            event="budget",
            at=datetime.now(UTC),
            instance=str(self.home),
            budget=mark,
            message=f"LLM spend reached {percent}% of the {status.scope} cap: {status.describe()}",
        )

    def _saved_seq(self) -> int | None:
        try:
            return int(json.loads(self.state_file.read_text())["decision_seq"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _save_seq(self) -> None:
        try:
            temp = self.state_file.with_suffix(".tmp")
            temp.write_text(json.dumps({"decision_seq": self._seq}))
            os.replace(temp, self.state_file)
        except OSError as exc:
            log.warning("notifications: could not save %s (%s)", self.state_file, exc)


def _parse_time(value: object) -> datetime:
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return datetime.now(UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def start(ctx: LoopContext) -> Watcher | None:
    """The event loop's one hook (when it prepares a run): start watching, if `[notify]` names a
    webhook or command."""
    from supervisor.route.ledger import LEDGER_FILE_NAME

    instance, settings = ctx.instance, ctx.config.notify
    if not settings.enabled:
        return None
    instance.run_dir.mkdir(parents=True, exist_ok=True)
    sender = Sender(settings).start()
    return Watcher(
        home=instance.home,
        decisions=instance.state / "decisions.jsonl",
        ledger=instance.state / LEDGER_FILE_NAME,
        caps=ctx.config.route.caps,
        state_file=instance.run_dir / "notify.json",
        sender=sender,
    ).start()
