"""Shared pieces of the route tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx2

from scripted_model import Scenario
from supervisor.route import LLMRoute, RouteEvent

# A key that must never leave the supervisor process; tests grep for it.
REAL_KEY = "sk-ant-REALKEY-" + secrets.token_hex(12)
MODEL = "claude-haiku-4-5"


def scenario(*usages: dict[str, int], repeat: bool = False) -> Scenario:
    """One step per usage dict, each a short text answer reporting exactly that usage."""
    steps = [{"content": [{"type": "text", "text": f"answer {n}"}], "usage": usage} for n, usage in enumerate(usages)]
    return Scenario.model_validate(
        {"name": "route-test", "steps": steps, "on_exhausted": "repeat" if repeat else "error"}
    )


class RouteHarness:
    """A started route plus what a test inspects: events, ledger path, a credential, SDK clients."""

    def __init__(self, route: LLMRoute, ledger_path: Path, events: list[RouteEvent]) -> None:
        self.route = route
        self.ledger_path = ledger_path
        self.events = events
        self.credential = route.issue_credential("run-test")

    def sdk(self, **kwargs: Any) -> anthropic.Anthropic:
        kwargs.setdefault("max_retries", 0)
        return anthropic.Anthropic(base_url=self.route.url, api_key=self.credential, **kwargs)

    def sdk_over_socket(self, **kwargs: Any) -> anthropic.Anthropic:
        transport = httpx2.HTTPTransport(uds=str(self.route.socket_path))
        return anthropic.Anthropic(
            base_url="http://llm-route",
            api_key=self.credential,
            http_client=httpx2.Client(transport=transport),
            **kwargs,
        )

    def raw(self) -> httpx2.Client:
        return httpx2.Client(base_url=self.route.url, timeout=10)

    def kinds(self) -> list[str]:
        return [event.kind for event in self.events]


def stop(harness: RouteHarness) -> None:
    """Stop a route and release its ledger (as a supervisor shutdown would)."""
    harness.route.stop()
    harness.route.ledger.close()


class FakeUpstream:
    """A stand-in upstream for what the scripted model cannot show: the headers it was sent, and
    an upstream that is slow (it holds each request until `release` is set or `delay_s` passes), and one
    that answers with exact bytes (usage the SDK would never send)."""

    def __init__(
        self,
        delay_s: float = 0.0,
        stream: list[bytes] | None = None,
        event_delay_s: float = 0.0,
        body: bytes | None = None,
    ) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.headers: list[dict[str, str]] = []
        self.delay_s = delay_s
        self.stream = stream  # when set: answer with these SSE events, then just close (no message_stop unless given)
        self.event_delay_s = event_delay_s
        self.body = body  # when set: answer every request with exactly these bytes (a JSON 200)
        self.release = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                if fake.delay_s:
                    fake.release.wait(fake.delay_s)
                if fake.stream is not None:
                    self._stream()
                    return
                body = fake.body if fake.body is not None else json.dumps(fake.message()).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _stream(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                self.end_headers()
                self.close_connection = True
                for event in fake.stream:
                    self.wfile.write(event)
                    self.wfile.flush()
                    time.sleep(fake.event_delay_s)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @staticmethod
    def message() -> dict[str, Any]:
        return {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [{"type": "text", "text": "ok"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 3, "output_tokens": 2},
        }

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
