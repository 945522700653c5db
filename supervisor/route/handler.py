"""One client connection: check, refuse or forward, meter, relay.

Every refusal is an Anthropic-shaped error body, so the SDK in the container raises the matching
typed error with our message; nothing a client sends can raise out of this handler.
"""

from __future__ import annotations

import json
import logging
import math
import re
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol

import httpx2

from supervisor.route.config import RouteConfig
from supervisor.route.ledger import NO_CYCLE, LedgerError, Reservation
from supervisor.route.limits import ConcurrencyGate, TokenBucket
from supervisor.route.policy import Admitted, PolicyError, admit, parse_json
from supervisor.route.settle import Settlement, produced_bytes, settle
from supervisor.route.sse import StreamUsage
from supervisor.route.upstream import Upstream

log = logging.getLogger("ouroboros.route")

MESSAGES = "/v1/messages"
COUNT_TOKENS = "/v1/messages/count_tokens"
CYCLE_HEADER = "x-ouroboros-cycle"
ONLY_ENDPOINTS = f"the LLM route serves only POST {MESSAGES} and POST {COUNT_TOKENS}"
_RELAYED_RESPONSE_HEADERS = ("request-id", "retry-after", "x-should-retry")
_CHUNK = 64 * 1024
_DIGITS = re.compile(r"[0-9]{1,15}")  # ASCII digits only: str.isdigit() also accepts '²'


@dataclass(frozen=True)
class Call:
    """What the route knows about one forwarded request."""

    run_id: str
    cycle: str
    model: str | None  # None: not metered (count_tokens)
    deadline: float  # time.monotonic() by which the upstream must be done
    reservation: Reservation | None = None


class Refusal(Exception):
    """An answer the route gives itself instead of forwarding."""

    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message
        self.headers = headers or {}


class RouteServices(Protocol):
    """What a handler asks of the route it serves (`server.LLMRoute`, which binds itself here)."""

    config: RouteConfig
    upstream: Upstream
    bucket: TokenBucket
    auth_failures: TokenBucket
    gate: ConcurrencyGate
    parse_lock: threading.Lock
    allowed_models: frozenset[str]
    stopping: bool

    def run_for_credential(self, token: str | None) -> str | None: ...

    def reserve(self, run_id: str, cycle: str, admitted: Admitted) -> Reservation: ...

    def record(
        self, call: Call, settled: Settlement, *, stream: bool, status: int, message_id: str | None, complete: bool
    ) -> None: ...

    def release(self, call: Call, reason: str) -> None: ...

    def count_refusal(self, kind: str) -> None: ...

    def ledger_failed(self, exc: LedgerError) -> None: ...

    def emit_throttled(self, kind: str, message: str) -> None: ...


class RouteHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the SDK's connection pool reuses the connection
    server_version = "ouroboros-llm-route"
    sys_version = ""
    _answered = False  # a status line went out for the request in hand (set again by each request)
    wbufsize = 64 * 1024  # status, headers and body leave in one write; streams flush per chunk
    route: RouteServices  # bound by LLMRoute when it builds its server

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
        """Cheap checks first (path, credential, rate, size, concurrency), then read and judge the body."""
        path = self.path.split("?", 1)[0]
        if path not in (MESSAGES, COUNT_TOKENS):
            self.close_connection = True
            raise Refusal(404, "not_found_error", f"{ONLY_ENDPOINTS}, not {path}")
        run_id = self._authenticate()
        self._check_rate()
        length = self._content_length()
        if self.route.stopping:
            self.close_connection = True
            raise Refusal(503, "overloaded_error", "the LLM route is stopping; retry shortly", {"retry-after": "5"})
        if not self.route.gate.try_enter():
            self.close_connection = True  # the body is not read: the connection cannot be reused
            self.route.emit_throttled("limit_refused", "concurrent request limit of the LLM route reached")
            limit = self.route.config.limits.max_concurrent
            raise Refusal(
                429,
                "rate_limit_error",
                f"the LLM route already forwards {limit} requests at once; retry shortly",
                {"retry-after": "1"},
            )
        try:
            admitted = self._admit(self._read_body(length), count_tokens=path == COUNT_TOKENS)
            if path == COUNT_TOKENS:  # free: neither metered nor capped
                self._forward(path, admitted.body, Call(run_id, NO_CYCLE, None, self._deadline()))
                return
            cycle = _cycle_id(self.headers.get(CYCLE_HEADER))
            held = self.route.reserve(run_id, cycle, admitted)
            body = admitted.body
            del admitted  # only the bytes travel on; the parsed request is already gone
            self._forward_metered(path, body, Call(run_id, cycle, held.model, self._deadline(), held))
        finally:
            self.route.gate.leave()

    def _deadline(self) -> float:
        return time.monotonic() + self.route.upstream.deadline_s

    def _admit(self, body: bytes, *, count_tokens: bool) -> Admitted:
        """Parse (one body at a time) and check against the allow-list; the parsed request is dropped here."""
        route = self.route
        try:
            with route.parse_lock:
                request = parse_json(body, route.config.policy.max_json_nodes)
                del body
                return admit(
                    request,
                    route.config.policy,
                    route.allowed_models,
                    self.headers.get("anthropic-beta"),
                    count_tokens=count_tokens,
                )
        except PolicyError as exc:
            route.emit_throttled("policy_refused", f"a request was refused: {exc}")
            raise Refusal(400, "invalid_request_error", f"{exc} (refused by the Ouroboros LLM route)") from exc

    def _authenticate(self) -> str:
        token = self.headers.get("x-api-key") or _bearer(self.headers.get("authorization"))
        run_id = self.route.run_for_credential(token)
        if run_id is not None:
            return run_id
        self.close_connection = True
        wait = self.route.auth_failures.take()
        self.route.emit_throttled("auth_refused", "requests with an unknown credential were refused")
        if wait > 0:  # a flood of wrong credentials: answered slowly and cheaply
            raise Refusal(
                429,
                "rate_limit_error",
                "too many failed authentications; retry later",
                {"retry-after": str(math.ceil(wait))},
            )
        raise Refusal(
            401,
            "authentication_error",
            "invalid x-api-key: use the per-run credential the supervisor gave this agent run",
        )

    def _check_rate(self) -> None:
        wait = self.route.bucket.take()
        if wait > 0:
            self.close_connection = True
            self.route.emit_throttled("limit_refused", "request rate limit of the LLM route reached")
            rate = self.route.config.limits.rate_per_s
            raise Refusal(
                429,
                "rate_limit_error",
                f"the LLM route's request rate limit ({rate}/s) is reached; retry after {wait:.1f}s",
                {"retry-after": str(math.ceil(wait))},
            )

    def _content_length(self) -> int:
        """The declared body size, checked before a byte of the body is read."""
        if "transfer-encoding" in self.headers:
            self.close_connection = True
            raise Refusal(
                411,
                "invalid_request_error",
                "a Content-Length header is required (chunked request bodies are not accepted)",
            )
        values = self.headers.get_all("content-length") or []
        if not values:
            self.close_connection = True
            raise Refusal(
                411,
                "invalid_request_error",
                "a Content-Length header is required (chunked request bodies are not accepted)",
            )
        if len(values) > 1 or not _DIGITS.fullmatch(values[0].strip()):
            self.close_connection = True
            raise Refusal(400, "invalid_request_error", "Content-Length must be one decimal number")
        length = int(values[0])
        limit = self.route.config.limits.max_body_bytes
        if length > limit:
            self.close_connection = True
            self.route.emit_throttled("limit_refused", f"a request body of {length} bytes was refused")
            raise Refusal(
                413, "request_too_large", f"request body is {length} bytes; the LLM route accepts at most {limit}"
            )
        return length

    def _read_body(self, length: int) -> bytes:
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            raise Refusal(400, "invalid_request_error", "the request body ended before Content-Length bytes")
        return body

    # -- forwarding ----------------------------------------------------------------------------

    def _forward_metered(self, path: str, body: bytes, call: Call) -> None:
        """Forward under a reservation: settled by the relay, released only if nothing was spent.

        A settlement that fails (the ledger cannot be written) leaves the reservation held: the
        usage is real, so it is charged at its worst case when the ledger is next opened.
        """
        self._metering_tried = False
        settled = False
        try:
            settled = self._forward(path, body, call)
        finally:
            if not settled and not self._metering_tried:
                self.route.release(call, "the request ended without usage to record")

    def _forward(self, path: str, body: bytes, call: Call) -> bool:
        """Send upstream and relay the answer; True once the call's usage was recorded."""
        route = self.route
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            response = route.upstream.open(path, body, headers)
        except httpx2.TimeoutException as exc:
            raise self._upstream_failure(504, "timeout_error", f"upstream did not answer in time ({exc})") from exc
        except httpx2.HTTPError as exc:
            raise self._upstream_failure(502, "api_error", f"upstream unreachable: {exc}") from exc
        del body
        try:
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                return self._relay_stream(response, call)
            return self._relay_whole(response, call)
        finally:
            response.close()

    def _upstream_failure(self, status: int, kind: str, message: str) -> Refusal:
        self.route.emit_throttled("upstream_error", message)
        return Refusal(status, kind, message)

    def _past_deadline(self) -> str:
        return f"upstream exceeded the route's deadline of {self.route.upstream.deadline_s}s"

    def _relay_whole(self, response: httpx2.Response, call: Call) -> bool:
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
        recorded = False
        if call.reservation is not None and response.status_code == 200:
            self._meter_message(content, call)  # recorded before the agent sees the answer
            recorded = True
        self._send(response.status_code, content, _relayed_headers(response))
        return recorded

    def _meter_message(self, content: bytes, call: Call) -> None:
        """Settle a whole answer by `settle.py`'s rules (no usage, or none that parses: the worst case)."""
        if call.reservation is None:
            return
        try:
            message = json.loads(content)
        except ValueError:  # includes integers too long to convert
            message = None
        if not isinstance(message, dict):
            message = {}
        message_id = message.get("id") if isinstance(message.get("id"), str) else None
        settled = settle(message.get("usage"), call.reservation.usage, produced_bytes(message.get("content")))
        self._metering_tried = True
        self.route.record(call, settled, stream=False, status=200, message_id=message_id, complete=True)

    def _relay_stream(self, response: httpx2.Response, call: Call) -> bool:
        self.send_response(response.status_code)
        for name, value in _relayed_headers(response).items():
            self.send_header(name, value)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._answered = True
        tracker = StreamUsage()
        client_gone = False
        recorded = False
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
            if call.reservation is not None and tracker.started:  # nothing arrived at all: released
                self._metering_tried = True
                settled = settle(tracker.usage_to_settle(), call.reservation.usage, tracker.produced_bytes)
                self.route.record(
                    call,
                    settled,
                    stream=True,
                    status=response.status_code,
                    message_id=tracker.message_id,
                    complete=tracker.stopped,
                )
                recorded = True
            if not client_gone:
                self._write_chunk(b"")  # the terminating chunk
            self.close_connection = self.close_connection or client_gone
        return recorded

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
        self.route.count_refusal(refusal.kind)
        if self._answered:
            self.close_connection = True  # too late for a status line; drop the connection
            return
        body = json.dumps({"type": "error", "error": {"type": refusal.kind, "message": refusal.message}}).encode()
        headers = {"Content-Type": "application/json", **refusal.headers}
        try:
            self._send(refusal.status, body, headers)
        except OSError:
            self.close_connection = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's own answers to a request too malformed to reach a `do_*` method (a
        header line too long, an unknown method, a bad request line): refusals too, and as cheap to repeat."""
        self.route.count_refusal("invalid_request_error")
        super().send_error(code, message, explain)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("LLM route: " + format, *args)


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
