"""What the console and /metrics read about one instance: bounded reads only, whatever the history's length."""

from __future__ import annotations

import os
import re
import sqlite3
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from supervisor.base import process_control
from supervisor.base.errors import OuroborosError
from supervisor.base.git_ops import Git, GitError
from supervisor.route.ledger import LedgerTotals, Spend
from supervisor.route.metering import CapStatus, cap_statuses
from supervisor.store.decision_log import Decision, DecisionLog
from supervisor.store.instance import Instance, InstanceConfig
from supervisor.store.scorecard import ScorecardStore
from supervisor.store.states import SupervisorState
from supervisor.store.status_file import Shown, Status, StatusFile, shown

SHA = re.compile(r"^[0-9a-f]{40}$")
MAX_DIFF_CHARS = 200_000
LOG_TAIL_BYTES = 64_000


class InstanceView:
    """One instance seen read-only; `refresh()` lets the scorecard consume new records first."""

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self.store = ScorecardStore(instance.state, instance.goals, live_since=self.live_since)
        self.git = Git(instance.repo)
        self.log = DecisionLog(instance.state / "decisions.jsonl")
        self.stale = ""

    def refresh(self) -> None:
        """Consume new records; if that cannot be done (say, a state folder this user may only read),
        show what the store already holds and say why it is not current."""
        try:
            self.store.update()
            self.stale = ""
        except (sqlite3.Error, OSError) as exc:
            self.stale = f"the scorecard could not be updated ({exc}); figures may be behind"

    def config(self) -> InstanceConfig:
        try:
            return self.instance.config()
        except (OuroborosError, ValidationError, OSError):
            return InstanceConfig()

    def status(self) -> Status | None:
        return StatusFile(self.instance.status_file).read()

    def running(self, status: Status | None) -> bool:
        """A supervisor holds the instance's lock (the file's word outlives a kill -9). A console that
        may not open the lock (another user's instance) goes by the file."""
        try:
            return process_control.is_locked(self.instance.run_dir / "supervisor.lock")
        except OSError:
            return status is not None and status.state is not SupervisorState.STOPPED

    def shown(self, status: Status | None) -> Shown:
        """State and probation as they may be shown (`status_file.shown`): never "on probation" when stopped."""
        return shown(status, self.running(status), status.generation if status else None)

    def live_since(self) -> float | None:
        """When the supervisor that runs now started (epoch), None if none runs: an agent run it
        started is alive up to now, any other run only up to its recorded end or last request."""
        status = self.status()
        if status is None or status.state is SupervisorState.STOPPED or not self.running(status):
            return None
        return status.started_at.timestamp()

    def uptime_s(self, status: Status | None) -> float | None:
        if status is None or status.state is SupervisorState.STOPPED or not self.running(status):
            return None
        return (datetime.now(UTC) - status.started_at).total_seconds()

    def caps(self, snapshot: dict[str, Any]) -> list[CapStatus]:
        """Spend against every configured cap, from the scorecard's running totals."""
        totals = LedgerTotals()
        total = snapshot["total"]
        totals.total = Spend(tokens=total["tokens"], usd=total["usd"], requests=total["requests"])
        today = datetime.now(UTC).date().isoformat()
        for day in snapshot["days"]:
            if day["day"] == today:
                totals.by_day[today] = Spend(tokens=day["tokens"], usd=Decimal(day["usd"]), requests=day["requests"])
        cycle = snapshot["last_cycle"]
        if cycle:
            totals.by_cycle[cycle["id"]] = Spend(
                tokens=cycle["tokens"], usd=Decimal(cycle["usd"]), requests=cycle["requests"]
            )
        return cap_statuses(totals, self.config().route.caps, cycle["id"] if cycle else None, today)

    def log_tail(self, count: int) -> list[Decision]:
        """The last `count` decisions, read from the end of the file (not the whole log)."""
        path = self.log.path
        if not path.exists():
            return []
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - LOG_TAIL_BYTES))
            lines = handle.read().splitlines()[1 if size > LOG_TAIL_BYTES else 0 :]
        found = []
        for line in lines[-count:]:
            try:
                found.append(Decision.model_validate_json(line))
            except ValidationError:
                continue
        return list(reversed(found))

    def diff(self, commit: str | None) -> str:
        """The change a commit made against its first parent, cut to a readable size."""
        if not commit or not SHA.match(commit):
            return ""
        try:
            parents = self.git.parents(commit)
            text = self.git.diff(parents[0], commit) if parents else self.git.diff(_EMPTY_TREE, commit, stat_only=True)
        except (GitError, OSError) as exc:
            return f"(no diff: {exc})"
        return text[:MAX_DIFF_CHARS] + ("\n… (cut)" if len(text) > MAX_DIFF_CHARS else "")

    def message(self, commit: str | None) -> str:
        if not commit or not SHA.match(commit):
            return ""
        try:
            return self.git.message(commit)[:20_000]
        except (GitError, OSError):
            return ""


_EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


def for_home(home: Path | None) -> InstanceView:
    return InstanceView(Instance.locate(home))
