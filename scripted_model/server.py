"""The HTTP server: Anthropic Messages API (plain JSON and SSE streaming) answered from a Scenario."""

from __future__ import annotations

import hashlib
import json
import os
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from scripted_model.compat import honour_tool_choice, reported_usage, tool_choice_problem
from scripted_model.scenario import Scenario, ScriptedError, Step, ToolUseBlock, load_scenario
from scripted_model.served import ServedLog, served_log_from_env
from scripted_model.sse import sse_events
from scripted_model.tokens import estimate_tokens, request_token_split

ASIDE_INDEX = 900_000  # asides are numbered from here, apart from the steps' indexes


class ScriptState:
    """The position in the scenario, the cache of seen prefixes, and the request log; thread-safe."""

    def __init__(self, scenario: Scenario, served_log: ServedLog | None = None) -> None:
        self.scenario = scenario
        self.served_log = served_log
        self.requests: list[dict[str, Any]] = []
        self.steps_served = 0
        self.asides_served = 0
        self._seen_prefixes: set[str] = set()
        self._lock = threading.Lock()

    def next_step(self, body: dict[str, Any]) -> tuple[int, Step | None, str | None]:
        """The step answering this request, and why the request does not match it (then not consumed)."""
        with self._lock:
            self.requests.append(body)
            system = _system_text(body)
            for aside in self.scenario.asides:
                if aside.system_contains in system:
                    self.asides_served += 1
                    return ASIDE_INDEX + self.asides_served - 1, aside.step, None
            index = self.steps_served
            steps = self.scenario.steps
            if index >= len(steps) and self.scenario.on_exhausted == "error":
                return index, None, None
            step = steps[index % len(steps)]
            problem = match_problem(step, index, body) or self._tool_choice_problem(step, index, body)
            if problem is None:
                self.steps_served += 1
            return index, step, problem

    def honours_tool_choice(self) -> bool:
        compat = self.scenario.compat
        return compat is None or not compat.ignore_tool_choice

    def _tool_choice_problem(self, step: Step, index: int, body: dict[str, Any]) -> str | None:
        if step.error is not None or not self.honours_tool_choice():
            return None
        return tool_choice_problem(body, [b.name for b in step.content if isinstance(b, ToolUseBlock)], index)

    def usage_for(self, step: Step, body: dict[str, Any], content: list[dict[str, Any]]) -> dict[str, int]:
        prefix, rest = request_token_split(body)
        digest = hashlib.sha256(
            json.dumps([body.get("tools"), body.get("system")], sort_keys=True).encode()
        ).hexdigest()
        with self._lock:
            cache_hit = prefix > 0 and digest in self._seen_prefixes
            if prefix:
                self._seen_prefixes.add(digest)
        given = step.usage
        return {
            "input_tokens": rest if given.input_tokens is None else given.input_tokens,
            "output_tokens": estimate_tokens(content) if given.output_tokens is None else given.output_tokens,
            "cache_read_input_tokens": (prefix if cache_hit else 0)
            if given.cache_read_input_tokens is None
            else given.cache_read_input_tokens,
            "cache_creation_input_tokens": (0 if cache_hit else prefix)
            if given.cache_creation_input_tokens is None
            else given.cache_creation_input_tokens,
        }


def _system_text(body: dict[str, Any]) -> str:
    system = body.get("system")
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "\n".join(b.get("text", "") for b in system if isinstance(b, dict) and isinstance(b.get("text"), str))
    return ""


def _last_user_texts(body: dict[str, Any]) -> tuple[str, str]:
    """Text of the last user message, and the text of its tool_result blocks."""
    users = [m for m in body.get("messages") or [] if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        return "", ""
    content = users[-1].get("content")
    if isinstance(content, str):
        return content, ""
    texts, results = [], []
    for block in content or []:
        if block.get("type") == "text":
            texts.append(block.get("text", ""))
        elif block.get("type") == "tool_result":
            inner = block.get("content")
            if isinstance(inner, str):
                results.append(inner)
            else:
                results.extend(b.get("text", "") for b in inner or [] if isinstance(b, dict))
    return "\n".join(texts), "\n".join(results)


def match_problem(step: Step, index: int, body: dict[str, Any]) -> str | None:
    """Why the request does not satisfy the step's `match`, or None."""
    if step.match is None:
        return None
    text, results = _last_user_texts(body)
    if step.match.contains is not None and step.match.contains not in text:
        return f"scenario step {index} expects the last user message to contain {step.match.contains!r}"
    if step.match.tool_result_contains is not None and step.match.tool_result_contains not in results:
        return f"scenario step {index} expects a tool_result containing {step.match.tool_result_contains!r}"
    return None


def render_content(step: Step, index: int) -> list[dict[str, Any]]:
    blocks = []
    for n, block in enumerate(step.content):
        if isinstance(block, ToolUseBlock):
            blocks.append(
                {
                    "type": "tool_use",
                    "id": block.id or f"toolu_{index:04d}_{n}",
                    "name": block.name,
                    "input": block.input,
                }
            )
        else:
            blocks.append({"type": "text", "text": block.text})
    return blocks


class MessagesHandler(BaseHTTPRequestHandler):
    """Serves POST /v1/messages (and count_tokens); every answer comes from the shared ScriptState."""

    protocol_version = "HTTP/1.1"
    state: ScriptState  # set on the per-server subclass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet by design
        if os.environ.get("SCRIPTED_MODEL_VERBOSE"):
            super().log_message(format, *args)

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/health":
            self._send_json(
                200, {"ok": True, "scenario": self.state.scenario.name, "steps_served": self.state.steps_served}
            )
        else:
            self._send_error(404, "not_found_error", f"no route GET {self.path}")

    def do_POST(self) -> None:
        body = self._read_body()
        if body is None:
            return
        route = self.path.split("?", 1)[0].rstrip("/")
        if route == "/v1/messages/count_tokens":
            prefix, rest = request_token_split(body)
            self._send_json(200, {"input_tokens": prefix + rest})
        elif route == "/v1/messages":
            self._answer_message(body)
        else:
            self._send_error(404, "not_found_error", f"no route POST {self.path}")

    def _read_body(self) -> dict[str, Any] | None:
        length = int(self.headers.get("content-length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError as e:
            self._send_error(400, "invalid_request_error", f"request body is not JSON: {e}")
            return None
        if not isinstance(body, dict):
            self._send_error(400, "invalid_request_error", "request body must be a JSON object")
            return None
        return body

    def _answer_message(self, body: dict[str, Any]) -> None:
        missing = [k for k in ("model", "max_tokens", "messages") if k not in body]
        if missing:
            self._send_error(400, "invalid_request_error", f"missing required field(s): {', '.join(missing)}")
            return
        index, step, problem = self.state.next_step(body)
        if step is None:
            name, count = self.state.scenario.name, len(self.state.scenario.steps)
            # Its own error type, so an agent can tell "nothing more will come" from a bad request.
            self._send_error(400, "scenario_exhausted", f"scenario {name!r} is exhausted after {count} steps")
            return
        if step.delay_ms:
            time.sleep(step.delay_ms / 1000)
        if problem:
            self._send_error(400, "invalid_request_error", problem)
            return
        if step.error is not None:
            self._send_scripted_error(step.error)
            return
        content, stop_reason = render_content(step, index), step.resolved_stop_reason()
        if self.state.honours_tool_choice():
            content, stop_reason = honour_tool_choice(body, content, stop_reason)
        log = self.state.served_log
        used = self.state.usage_for(step, body, content)
        message: dict[str, Any] = {
            "id": log.message_id(index) if log else f"msg_scripted_{index:04d}",
            "type": "message",
            "role": "assistant",
            "model": self.state.scenario.model or body["model"],
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
        }
        reported = reported_usage(self.state.scenario.compat, used, index)
        if reported is not None:
            message["usage"] = reported
        if log is not None:
            log.record(message, used, stream=bool(body.get("stream")))  # before any byte of it is sent
        if body.get("stream"):
            self._send_stream(message)
        else:
            self._send_json(200, message)

    def _send_stream(self, message: dict[str, Any]) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()
        self.close_connection = True
        for event in sse_events(message):
            self.wfile.write(event)
            self.wfile.flush()

    def _send_scripted_error(self, error: ScriptedError) -> None:
        headers = {"retry-after-ms": str(error.retry_after_ms)} if error.retry_after_ms is not None else {}
        self._send_error(error.status, error.type, error.message, headers)

    def _send_error(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> None:
        self._send_json(status, {"type": "error", "error": {"type": kind, "message": message}}, headers)

    def _send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", f"req_scripted_{self.state.steps_served:04d}")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


class _QuietOnHangUp:
    """A client that hangs up mid-answer (a timeout, a killed agent) is normal here: no traceback on stderr."""

    def handle_error(self, request, client_address):  # type: ignore[no-untyped-def]
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)  # type: ignore[misc]


class _ThreadingTCPHTTPServer(_QuietOnHangUp, ThreadingHTTPServer):
    daemon_threads = True


class _ThreadingUnixHTTPServer(_QuietOnHangUp, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):  # type: ignore[no-untyped-def]
        conn, _ = super().get_request()
        return conn, ("unix", 0)  # BaseHTTPRequestHandler expects a (host, port) pair


class ScriptedModelServer:
    """Serve a scenario on TCP (default) or a Unix socket, in a background thread.

    with ScriptedModelServer("scenario.json") as server:
        client = anthropic.Anthropic(base_url=server.url, api_key="scripted")
    """

    def __init__(
        self,
        scenario: Scenario | str | Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        socket_path: str | Path | None = None,
        served_log: str | Path | None = None,
    ) -> None:
        log = ServedLog(served_log) if served_log else served_log_from_env()
        self.state = ScriptState(scenario if isinstance(scenario, Scenario) else load_scenario(scenario), log)
        handler = type("BoundMessagesHandler", (MessagesHandler,), {"state": self.state})
        self.socket_path = Path(socket_path) if socket_path else None
        if self.socket_path:
            self.socket_path.unlink(missing_ok=True)
            self._httpd: socketserver.BaseServer = _ThreadingUnixHTTPServer(str(self.socket_path), handler)
            self.url = "http://scripted-model"  # the host is ignored over a Unix socket
        else:
            httpd = _ThreadingTCPHTTPServer((host, port), handler)
            self._httpd = httpd
            self.url = f"http://{host}:{httpd.server_address[1]}"
        self._thread: threading.Thread | None = None

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every request body received so far, in order."""
        return self.state.requests

    @property
    def steps_served(self) -> int:
        return self.state.steps_served

    def start(self) -> ScriptedModelServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="scripted-model", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()
        if self.socket_path:
            self.socket_path.unlink(missing_ok=True)

    def __enter__(self) -> ScriptedModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
