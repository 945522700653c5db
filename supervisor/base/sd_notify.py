"""sd_notify without libsystemd: READY=1, STATUS=, STOPPING=1 and WATCHDOG=1 over $NOTIFY_SOCKET.

The event loop calls `publish(status)` whenever it writes its status, which it does at
least twice a second while idle: so the watchdog pings come from the loop itself, and a hung loop
stops them and systemd restarts the service (WatchdogSec= in packaging/systemd/). Outside systemd
(no NOTIFY_SOCKET) every call is a no-op. A send that fails is dropped: systemd's absence or
restart must never stop the supervisor.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Mapping
from typing import Protocol

READY_STATES = frozenset({"running", "idle", "gating"})


class _StatusLike(Protocol):
    # Read-only, so a status whose state is a str enum (SupervisorState) fits.
    @property
    def state(self) -> str: ...
    @property
    def generation(self) -> int | None: ...
    @property
    def message(self) -> str: ...


class Notifier:
    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        self.address = _address(environ.get("NOTIFY_SOCKET", ""))
        self.interval_s = _watchdog_interval(environ)
        self._ready = False
        self._status = ""
        self._pinged_at = 0.0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def publish(self, status: _StatusLike) -> None:
        """READY once the loop runs, STATUS on change, STOPPING, and a rate-limited watchdog ping."""
        if not self.enabled:
            return
        lines = []
        text = f"{status.state}, generation {status.generation if status.generation is not None else '-'}"
        if status.message:
            text += f": {status.message[:120]}"
        with self._lock:
            if status.state in READY_STATES and not self._ready:
                self._ready = True
                lines.append("READY=1")
            if status.state == "stopping":
                lines.append("STOPPING=1")
            if text != self._status:
                self._status = text
                lines.append("STATUS=" + " ".join(text.split()))  # one line: systemd splits on newlines
            now = time.monotonic()
            if self.interval_s and now - self._pinged_at >= self.interval_s / 4:
                self._pinged_at = now
                lines.append("WATCHDOG=1")
        if lines:
            self.send("\n".join(lines))

    def send(self, message: str) -> bool:
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message.encode(), self.address)
            return True
        except OSError:
            return False


def _address(raw: str) -> str | bytes | None:
    if not raw:
        return None
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()  # an abstract socket
    return raw if raw.startswith("/") else None


def _watchdog_interval(environ: Mapping[str, str]) -> float | None:
    usec, pid = environ.get("WATCHDOG_USEC", ""), environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None  # meant for another process
    return int(usec) / 1_000_000


_notifier: Notifier | None = None


def publish(status: _StatusLike) -> None:
    """The event loop's one hook: called from `StatusBoard.write` (supervisor/loop/reporting.py)."""
    global _notifier
    if _notifier is None:
        _notifier = Notifier()
    _notifier.publish(status)
