"""One client connection: check, refuse or forward, meter, relay.

Every refusal is an Anthropic-shaped error body, so the SDK in the container raises the matching
typed error with our message; nothing a client sends can raise out of this handler.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING

import httpx2

from supervisor.route.ledger import NO_CYCLE, LedgerError
from supervisor.route.pricing import Usage
from supervisor.route.sse import StreamUsage

if TYPE_CHECKING:
    from supervisor.route.server import LLMRoute

log = logging.getLogger("ouroboros.route")

MESSAGES = "/v1/messages"
COUNT_TOKENS = "/v1/messages/count_tokens"
CYCLE_HEADER = "x-ouroboros-cycle"
ONLY_ENDPOINTS = f"the LLM route serves only POST {MESSAGES} and POST {COUNT_TOKENS}"
_RELAYED_RESPONSE_HEADERS = ("request-id", "retry-after", "x-should-retry")
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Call:
    """What the route knows about one forwarded request."""

    run_id: str
    cycle: str
    model: str | None  # None: not metered (count_tokens)
    deadline: float  # time.monotonic() by which the upstream must be done


class Refusal(Exception):
    """An answer the route gives itself instead of forwarding."""

    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message
        self.headers = headers or {}


class RouteHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the SDK's connection pool reuses the connection
    server_version = "ouroboros-llm-route"
    sys_version = ""
    wbufsize = 64 * 1024  # status, headers and body leave in one write; streams flush per chunk
    route: LLMRoute  # bound by LLMRoute when it builds its server

    def setup(self) -> None:
        super().setup()
        try:  # stream chunks are small separate writes; Nagle would hold them back for an ACK
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # a Unix socket has no Nagle

    def do_POST(self) -> None:
        self._answered = False
        try:
            self._handle_post()
        except Refusal as refusal:
            self._send_error(refusal)
        except LedgerError as exc:
            self.route.ledger_failed(exc)
            self._send_error(Refusal(500, "api_error", f"the LLM route could not record spend: {exc}"))
        except Exception:  # a bug must cost one request, never the supervisor
            log.exception("LLM route: unexpected error while handling %s", self.path)
            self._send_error(Refusal(500, "api_error", "internal error in the LLM route; see the supervisor log"))

    def do_GET(self) -> None:
        self._refuse_method()

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _refuse_method(self) -> None:
        self._answered = False
        self.close_connection = True
        self._send_error(Refusal(404, "not_found_error", ONLY_ENDPOINTS))

    # -- the request, step by step -------------------------------------------------------------

    def _handle_post(self) -> None:
        path = self.path.split("?", 1)[0]
        if path not in (MESSAGES, COUNT_TOKENS):
            self.close_connection = True
            raise Refusal(404, "not_found_error", f"{ONLY_ENDPOINTS}, not {path}")
        run_id = self._authenticate()
        self._check_rate()
        body = self._read_body()
        request = _parse_json_object(body)
        if path == COUNT_TOKENS:  # free: neither metered nor capped
            self._forward(path, body, Call(run_id, NO_CYCLE, None, self._deadline()))
            return
        model = self._priced_model(request)
        cycle = _cycle_id(self.headers.get(CYCLE_HEADER))
        self.route.check_budget(run_id, cycle)
        self._forward(path, body, Call(run_id, cycle, model, self._deadline()))

    def _deadline(self) -> float:
        return time.monotonic() + self.route.upstream.deadline_s

    def _priced_model(self, request: dict) -> str:
        model = request.get("model")
        if not isinstance(model, str) or not model:
            raise Refusal(400, "invalid_request_error", "model: a model name (string) is required")
        if self.route.config.pricing.price_for(model) is None:
            raise Refusal(
                400, "invalid_request_error",
                f"model {model!r} has no price in the route's pricing table; "
                "ask the operator to add it under [route.pricing.models] in ouroboros.toml",
            )
        return model

    def _authenticate(self) -> str:
        token = self.headers.get("x-api-key") or _bearer(self.headers.get("authorization"))
        run_id = self.route.run_for_credential(token)
        if run_id is None:
            self.close_connection = True
            self.route.emit_throttled("auth_refused", "a request with an unknown credential was refused")
            raise Refusal(
                401, "authentication_error",
                "invalid x-api-key: use the per-run credential the supervisor gave this agent run",
            )
        return run_id

    def _check_rate(self) -> None:
        wait = self.route.bucket.take()
        if wait > 0:
            self.close_connection = True
            self.route.emit_throttled("limit_refused", "request rate limit of the LLM route reached")
            rate = self.route.config.limits.rate_per_s
            raise Refusal(
                429, "rate_limit_error",
                f"the LLM route's request rate limit ({rate}/s) is reached; retry after {wait:.1f}s",
                {"retry-after": str(math.ceil(wait))},
            )

    def _read_body(self) -> bytes:
        length_header = self.headers.get("content-length")
        if length_header is None or not length_header.isdigit():
            self.close_connection = True
            raise Refusal(
                411, "invalid_request_error",
                "a Content-Length header is required (chunked request bodies are not accepted)",
            )
        length = int(length_header)
        limit = self.route.config.limits.max_body_bytes
        if length > limit:
            self.close_connection = True
            self.route.emit_throttled("limit_refused", f"a request body of {length} bytes was refused")
            raise Refusal(
                413, "request_too_large", f"request body is {length} bytes; the LLM route accepts at most {limit}"
            )
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            raise Refusal(400, "invalid_request_error", "the request body ended before Content-Length bytes")
        return body

    # -- forwarding ----------------------------------------------------------------------------

    def _forward(self, path: str, body: bytes, call: Call) -> None:
        route = self.route
        if not route.gate.try_enter():
            route.emit_throttled("limit_refused", "concurrent request limit of the LLM route reached")
            limit = route.config.limits.max_concurrent
            raise Refusal(
                429, "rate_limit_error", f"the LLM route already forwards {limit} requests at once; retry shortly",
                {"retry-after": "1"},
            )
        try:
            headers = {name.lower(): value for name, value in self.headers.items()}
            try:
                response = route.upstream.open(path, body, headers)
            except httpx2.TimeoutException as exc:
                raise self._upstream_failure(504, "timeout_error", f"upstream did not answer in time ({exc})") from exc
            except httpx2.HTTPError as exc:
                raise self._upstream_failure(502, "api_error", f"upstream unreachable: {exc}") from exc
            try:
                if response.headers.get("content-type", "").startswith("text/event-stream"):
                    self._relay_stream(response, call)
                else:
                    self._relay_whole(response, call)
            finally:
                response.close()
        finally:
            route.gate.leave()

    def _upstream_failure(self, status: int, kind: str, message: str) -> Refusal:
        self.route.emit_throttled("upstream_error", message)
        return Refusal(status, kind, message)

    def _past_deadline(self) -> str:
        return f"upstream exceeded the route's deadline of {self.route.upstream.deadline_s}s"

    def _relay_whole(self, response: httpx2.Response, call: Call) -> None:
        try:
            parts = []
            for chunk in response.iter_raw(_CHUNK):
                parts.append(chunk)
                if time.monotonic() > call.deadline:
                    raise self._upstream_failure(504, "timeout_error", self._past_deadline())
        except httpx2.TimeoutException as exc:
            raise self._upstream_failure(504, "timeout_error", f"upstream stopped answering ({exc})") from exc
        except httpx2.HTTPError as exc:
            raise self._upstream_failure(502, "api_error", f"upstream connection failed: {exc}") from exc
        content = b"".join(parts)
        if call.model is not None and response.status_code == 200:
            self._meter_message(content, call)  # recorded before the agent sees the answer
        self._send(response.status_code, content, _relayed_headers(response))

    def _meter_message(self, content: bytes, call: Call) -> None:
        try:
            message = json.loads(content)
        except ValueError:
            message = None
        usage = Usage.from_api(message.get("usage")) if isinstance(message, dict) else None
        if usage is None:  # nothing to price: say so loudly rather than guess
            self.route.emit_throttled("upstream_error", "upstream answered 200 without a usage object")
            return
        message_id = message.get("id") if isinstance(message.get("id"), str) else None
        self.route.record(call, usage, stream=False, status=200, message_id=message_id, complete=True)

    def _relay_stream(self, response: httpx2.Response, call: Call) -> None:
        self.send_response(response.status_code)
        for name, value in _relayed_headers(response).items():
            self.send_header(name, value)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._answered = True
        tracker = StreamUsage()
        client_gone = False
        try:
            for chunk in response.iter_raw():
                tracker.feed(chunk)
                client_gone = client_gone or not self._write_chunk(chunk)  # keep draining: count it all
                if time.monotonic() > call.deadline:
                    self._stream_error("timeout_error", self._past_deadline(), client_gone)
                    break
            else:
                if not (tracker.stopped or tracker.errored):  # a clean EOF can still be a cut stream
                    self._stream_error("api_error", "upstream stream ended before message_stop", client_gone)
        except httpx2.HTTPError as exc:
            self._stream_error("api_error", f"upstream stream failed: {exc}", client_gone)
        finally:
            if call.model is not None and tracker.usage is not None:
                self.route.record(
                    call, tracker.usage, stream=True, status=response.status_code,
                    message_id=tracker.message_id, complete=tracker.stopped,
                )
            if not client_gone:
                self._write_chunk(b"")  # the terminating chunk
            self.close_connection = self.close_connection or client_gone

    def _stream_error(self, kind: str, message: str, client_gone: bool) -> None:
        self.route.emit_throttled("upstream_error", message)
        if not client_gone:
            event = json.dumps({"type": "error", "error": {"type": kind, "message": message}})
            self._write_chunk(f"event: error\ndata: {event}\n\n".encode())

    # -- writing -------------------------------------------------------------------------------

    def _write_chunk(self, data: bytes) -> bool:
        """Write one chunk of a chunked response; False if the client has gone."""
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
            return True
        except OSError:
            return False

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self._answered = True
        self.wfile.write(body)

    def _send_error(self, refusal: Refusal) -> None:
        if getattr(self, "_answered", False):
            self.close_connection = True  # too late for a status line; drop the connection
            return
        body = json.dumps({"type": "error", "error": {"type": refusal.kind, "message": refusal.message}}).encode()
        headers = {"Content-Type": "application/json", **refusal.headers}
        try:
            self._send(refusal.status, body, headers)
        except OSError:
            self.close_connection = True

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        log.debug("LLM route: " + format, *args)


def _parse_json_object(body: bytes) -> dict:
    try:
        request = json.loads(body)
    except ValueError as exc:
        raise Refusal(400, "invalid_request_error", f"request body is not valid JSON: {exc}") from exc
    if not isinstance(request, dict):
        raise Refusal(400, "invalid_request_error", "request body must be a JSON object")
    return request


def _bearer(value: str | None) -> str | None:
    if value and value.lower().startswith("bearer "):
        return value[7:].strip()
    return None


def _cycle_id(raw: str | None) -> str:
    """The agent's cycle id, trimmed to something safe to log and key on."""
    if not raw:
        return NO_CYCLE
    cleaned = "".join(ch for ch in raw.strip() if ch.isalnum() or ch in "-_.:")
    return cleaned[:128] or NO_CYCLE


def _relayed_headers(response: httpx2.Response) -> dict[str, str]:
    headers = {"Content-Type": response.headers.get("content-type", "application/json")}
    for name in _RELAYED_RESPONSE_HEADERS:
        if name in response.headers:
            headers[name] = response.headers[name]
    return headers
