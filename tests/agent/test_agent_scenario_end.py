"""A scripted scenario that runs out makes the agent idle (journaled) until stopped, never crash-loop."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from conftest import agent_env

from scripted_model import Scenario


def test_exhausted_scenario_idles_journaled_and_stops_cleanly(workspace, serve):
    server = serve(Scenario(name="short", steps=[{"content": [{"type": "text", "text": "1. Look around."}]}]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "run"],
        cwd=workspace,
        env=agent_env(workspace, server.url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        notes = []
        while time.monotonic() < deadline and not any("scripted scenario has ended" in n.read_text() for n in notes):
            time.sleep(0.1)
            notes = list((workspace / "agent/journal").glob("*/*/*/notes.md"))
        assert notes, "nothing journaled"
        time.sleep(1.0)
        assert proc.poll() is None, "the agent exited instead of idling"
        requests = len(server.requests)
        time.sleep(1.0)
        assert len(server.requests) == requests  # idle: no more calls to the model
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    text = "".join(n.read_text() for n in notes)
    assert "scenario 'short' is exhausted after 1 steps" in text
