"""A record of every message the scripted model answered, with its usage, for tests to audit metering.

The supervisor's route meters what the model says it used; a test that checks the route needs the
model's own account, kept where the route cannot touch it. `ServedLog` appends one JSON line per
answered message to a file **before** the answer's first byte is sent, with a single `write` to a
file opened `O_APPEND`: once the line is in the kernel a kill -9 of the process cannot lose it, so
every answer that may have left the server is listed (a kill between the record and the send lists
an answer nobody received, which a test must allow for; the reverse never happens). Error answers
are not listed: they carry no usage and are not billed.

Set `SCRIPTED_MODEL_SERVED_LOG=<path>` (or pass `served_log=`) to turn it on. Message ids then carry
a random per-server tag (`msg_scripted_<tag>_<n>`), so ids stay unique across restarts of a server
that append to the same log.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

SERVED_LOG_ENV = "SCRIPTED_MODEL_SERVED_LOG"


class ServedLog:
    """Appends `{"ts", "server", "id", "stream", "usage", "reported"}` lines; thread-safe.

    `usage` is what the answer really used; `reported` what the answer said (None: no usage object),
    which differs only in a `compat` mode.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.server = secrets.token_hex(4)
        self._lock = threading.Lock()

    def message_id(self, index: int) -> str:
        return f"msg_scripted_{self.server}_{index:04d}"

    def record(self, message: dict[str, Any], used: dict[str, int], stream: bool) -> None:
        """List one answer (call before sending it); raises OSError if it cannot be listed."""
        line = (
            json.dumps(
                {
                    "ts": time.time(),
                    "server": self.server,
                    "id": message["id"],
                    "stream": stream,
                    "usage": used,
                    "reported": message.get("usage"),
                }
            )
            + "\n"
        )
        data = line.encode()
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                if os.write(fd, data) != len(data):
                    raise OSError(f"short write to {self.path}")
            finally:
                os.close(fd)


def served_log_from_env() -> ServedLog | None:
    path = os.environ.get(SERVED_LOG_ENV)
    return ServedLog(path) if path else None


def read_served(path: Path) -> list[dict[str, Any]]:
    """Every complete line of a served log, in order (a torn last line was never sent: skipped)."""
    if not path.exists():
        return []
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]
