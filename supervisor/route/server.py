"""The LLM route: a small HTTP server in the supervisor process, on a Unix socket and/or loopback TCP.

The agent's container has no network at all; the directory holding the route's socket is its only
way out (see docs/route.md). One route serves any number of agent runs, each with its own
credential, and one ledger.
"""

from __future__ import annotations

import ctypes
import hmac
import logging
import secrets
import socket
import socketserver
import threading
from datetime import timedelta
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from supervisor.base.errors import ConfigError
from supervisor.base.throttle import Throttle
from supervisor.base.unix_socket import bind_address
from supervisor.route.config import RouteConfig
from supervisor.route.fleet_limits import FleetUnavailable
from supervisor.route.handler import Call, Refusal, RouteHandler
from supervisor.route.ledger import Ledger, LedgerEntry, LedgerError, Release, Reservation, utc_now
from supervisor.route.limits import ConcurrencyGate, TokenBucket
from supervisor.route.metering import BudgetGuard, EventSink, RouteEvent, new_reservation, refusal_event
from supervisor.route.policy import Admitted
from supervisor.route.pricing import Usage
from supervisor.route.settle import Settlement, settled_cost
from supervisor.route.upstream import Upstream

log = logging.getLogger("ouroboros.route")

AGENT_SOCKET_DIR = "/run/ouroboros"  # where the socket directory appears inside the agent container
SOCKET_NAME = "llm.sock"
UDS_BASE_URL = "http://llm-route"  # host part is ignored over a Unix socket; kept readable in logs


def new_credential() -> str:
    """A fresh run credential, shaped as every agent run's (acceptance's scripted model gets one too)."""
    return "ouroboros-run-" + secrets.token_urlsafe(32)


def log_only(event: RouteEvent) -> None:
    log.info("LLM route event %s: %s", event.kind, event.message)


if TYPE_CHECKING:
    from supervisor.route.fleet_budget import FleetBudget  # psycopg: loaded only by a node with a fleet
    from supervisor.route.fleet_caps import CapState

    # What the mixin below is always mixed into: a threading socket server (for the type checker only).
    class _CapBase(socketserver.ThreadingMixIn, socketserver.BaseServer): ...

    # What socketserver hands its hooks: a connected socket (a datagram pair for UDP servers).
    _Request = socket.socket | tuple[bytes, socket.socket]
else:
    _CapBase = object


class _ConnectionCap(_CapBase):
    """Mixin: refuse connections past a cap instead of spawning unbounded threads."""

    max_connections = 64
    request_queue_size = 128  # listen backlog: 5 (the default) resets clients that connect at once
    daemon_threads = True
    block_on_close = False

    def process_request(self, request: _Request, client_address: Any) -> None:
        with self._open_lock:
            full = self._open >= self.max_connections
            if not full:
                self._open += 1
        if full:
            # Counted, and logged at most once an interval: a hostile agent can retry as fast as it connects.
            route: LLMRoute = self.RequestHandlerClass.route  # type: ignore[attr-defined]
            route.count_refusal("connection_refused")
            route.emit_throttled("limit_refused", f"connection refused, {self.max_connections} already open")
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: _Request, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open -= 1

    def handle_error(self, request: _Request, client_address: Any) -> None:
        # A client that hangs up mid-request is routine; anything else the handler already logged.
        log.debug("LLM route: connection ended abruptly", exc_info=True)

    def _init_cap(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self._open = 0
        self._open_lock = threading.Lock()


class _TCPServer(_ConnectionCap, ThreadingHTTPServer):
    pass


class _UnixServer(_ConnectionCap, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    pass


class LLMRoute:
    """Start with `start()`, hand each agent run `issue_credential()`, stop with `stop()`.

    `socket_path`: serve on this Unix socket (its directory is what the agent container mounts).
    `tcp_port`: also serve on 127.0.0.1 (0 picks a free port); None for no TCP.
    `fleet`: the fleet's budget (an opened FleetBudget): each request also reserves against its caps.
    """

    def __init__(
        self,
        config: RouteConfig,
        ledger: Ledger,
        upstream: Upstream,
        on_event: EventSink = log_only,
        *,
        socket_path: Path | None = None,
        tcp_port: int | None = None,
        fleet: FleetBudget | None = None,
    ) -> None:
        if socket_path is None and tcp_port is None:
            raise ConfigError("the LLM route needs a socket_path or a tcp_port to listen on")
        self.config = config
        self.ledger = ledger
        self.fleet = fleet
        self.upstream = upstream
        self.socket_path = socket_path
        self._tcp_port = tcp_port
        self._on_event = on_event
        self.bucket = TokenBucket(config.limits.rate_per_s, config.limits.rate_burst)
        self.auth_failures = TokenBucket(config.limits.auth_failures_per_s, config.limits.auth_failures_burst)
        self.gate = ConcurrencyGate(config.limits.max_concurrent)
        self.parse_lock = threading.Lock()  # one body parsed at a time: bounds the memory parsing takes
        self.allowed_models = frozenset(config.policy.models)
        self.stopping = False
        self.guard = BudgetGuard(ledger.totals, config.caps, self._emit)
        self._throttle = Throttle()
        self._credentials: dict[str, str] = {}
        self._credentials_lock = threading.Lock()
        self._servers: list[socketserver.BaseServer] = []
        self._threads: list[threading.Thread] = []
        self._ledger_error: LedgerError | None = None
        # Every answer the route gave itself, by error type: a small fixed set, counted exactly (the
        # events about them are throttled). For `/metrics`, through status.json.
        self._refusals: dict[str, int] = {}
        self._refusals_lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> LLMRoute:
        fix_malloc_threshold()
        bound = {"route": self, "timeout": self.config.limits.idle_timeout_s}  # timeout: per socket read
        handler = type("BoundRouteHandler", (RouteHandler,), bound)
        try:
            if self.socket_path is not None:
                self._servers.append(self._unix_server(handler))
            if self._tcp_port is not None:
                tcp_server = _TCPServer(("127.0.0.1", self._tcp_port), handler)
                tcp_server._init_cap(self.config.limits.max_connections)
                self._servers.append(tcp_server)
        except OSError as exc:
            self.stop()
            raise ConfigError(f"the LLM route cannot listen: {exc}; free the socket or port") from exc
        for server in self._servers:
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="llm-route", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        log.info("LLM route listening on %s", ", ".join(self.listening_on()))
        return self

    def _unix_server(self, handler: type[RouteHandler]) -> _UnixServer:
        assert self.socket_path is not None
        directory = self.socket_path.parent
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o755)  # the container's uid 10001 must traverse it
        if self.socket_path.is_socket() or self.socket_path.is_symlink():
            self.socket_path.unlink()  # left by a route that was killed
        with bind_address(self.socket_path) as address:  # a deep home still binds (supervisor/base/unix_socket.py)
            server = _UnixServer(address, handler)
        server._init_cap(self.config.limits.max_connections)
        # Anyone who can reach the socket still needs a run credential; 0666 lets uid 10001 connect.
        self.socket_path.chmod(0o666)
        return server

    def stop(self, deadline_s: float | None = None) -> None:
        """Stop accepting, let requests in flight finish and be metered (up to the deadline), close.

        A request still running at the deadline is cut: its stream settles with what arrived; one
        that cannot settle stays reserved in the ledger and is charged its worst case at next open.
        """
        self.stopping = True
        for server, thread in zip(self._servers, self._threads, strict=False):
            server.shutdown()  # only servers whose serve_forever runs; shutdown() waits for it
            thread.join(timeout=5)
        for server in self._servers:
            server.server_close()
        self._servers, self._threads = [], []
        if self.socket_path is not None and self.socket_path.is_socket():
            self.socket_path.unlink()
        wait = self.config.limits.stop_deadline_s if deadline_s is None else deadline_s
        if not self.gate.wait_idle(wait):
            log.warning("LLM route: %d request(s) still in flight after %.0fs; cutting them", self.gate.busy, wait)
        self.upstream.close()
        self.gate.wait_idle(2.0)  # cut streams settle with what arrived

    def __enter__(self) -> LLMRoute:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def listening_on(self) -> list[str]:
        places = []
        if self.socket_path is not None:
            places.append(f"unix:{self.socket_path}")
        if self.url_tcp:
            places.append(self.url_tcp)
        return places

    @property
    def url_tcp(self) -> str | None:
        for server in self._servers:
            if isinstance(server, _TCPServer):
                # an AF_INET server's address is (host, port) with a str host
                host, port = cast(tuple[str, int], server.server_address[:2])
                return f"http://{host}:{port}"
        return None

    @property
    def url(self) -> str:
        """Base URL for a client: the TCP one when there is one, else the placeholder for the socket."""
        return self.url_tcp or UDS_BASE_URL

    # -- credentials and what the agent container needs ---------------------------------------

    def issue_credential(self, run_id: str) -> str:
        """A fresh credential for one agent run; worthless anywhere but this route."""
        token = new_credential()
        with self._credentials_lock:
            self._credentials[token] = run_id
        return token

    def revoke_credential(self, token: str) -> None:
        with self._credentials_lock:
            self._credentials.pop(token, None)

    def run_for_credential(self, token: str | None) -> str | None:
        if not token:
            return None
        with self._credentials_lock:
            for known, run_id in self._credentials.items():
                if hmac.compare_digest(known.encode(), token.encode()):
                    return run_id
        return None

    def agent_env(self, credential: str) -> dict[str, str]:
        """The environment an agent container needs to reach the route (never the real key)."""
        if self.socket_path is None:
            raise ConfigError("agent containers reach the route through its Unix socket; start it with socket_path")
        return {
            "ANTHROPIC_BASE_URL": UDS_BASE_URL,
            "ANTHROPIC_API_KEY": credential,
            "OUROBOROS_LLM_SOCKET": f"{AGENT_SOCKET_DIR}/{self.socket_path.name}",
        }

    # -- budget and events (called by the handler) ---------------------------------------------

    def reserve(self, run_id: str, cycle: str, admitted: Admitted) -> Reservation:
        """Hold the request's worst case against every cap, durably, or refuse it (402)."""
        if self._ledger_error is not None:
            raise Refusal(
                503,
                "api_error",
                f"the LLM route stopped forwarding: its ledger failed ({self._ledger_error}); the operator must fix it",
            )
        price = self.config.pricing.price_for(admitted.model)
        if price is None:
            raise Refusal(
                400,
                "invalid_request_error",
                f"model {admitted.model!r} has no price in the route's pricing table; "
                "ask the operator to add it under [route.pricing.models] in ouroboros.toml",
            )
        worst = Usage(input_tokens=admitted.input_tokens_bound, output_tokens=admitted.max_tokens)
        cost = (
            max(price.input, price.cache_write, price.cache_read) * worst.input_tokens / 1_000_000
            + price.output * worst.output_tokens / 1_000_000
            + admitted.server_tool_usd
        )
        held = new_reservation(run_id, cycle, admitted.model, admitted.stream, worst, cost)
        status = self.guard.reserve(self.ledger, held)
        if status is None:
            if self.fleet is not None:
                self._reserve_in_fleet(self.fleet, held)
            return held
        self._emit(refusal_event(status, run_id, cycle))
        headers = {"x-should-retry": "false"}
        if status.scope == "day":
            headers["retry-after"] = str(_seconds_to_next_utc_day())
        message = (
            f"budget cap: {status.describe()}; lower max_tokens or the request's size, or idle until the budget resets"
        )
        raise Refusal(402, "billing_error", message, headers)

    def _reserve_in_fleet(self, fleet: FleetBudget, held: Reservation) -> None:
        """Hold `held` against the fleet's caps too; if it cannot be, release it locally and refuse."""
        try:
            refused: CapState | None = fleet.reserve(
                held.id, held.run_id, held.model, held.usage.total_tokens, held.cost_usd
            )
        except FleetUnavailable as exc:
            self.ledger.append(Release(ts=utc_now(), id=held.id, reason="fleet budget unavailable"), sync=False)
            self.emit_throttled("fleet_unavailable", f"a request was refused: the fleet budget is unavailable ({exc})")
            raise Refusal(
                503,
                "api_error",
                f"the fleet's budget cannot be checked, so the request was not forwarded (nothing was spent): "
                f"{exc}; retry later",
                {"retry-after": "10"},
            ) from None
        if refused is None:
            return
        self.ledger.append(Release(ts=utc_now(), id=held.id, reason="fleet budget cap"), sync=False)
        self._emit(
            RouteEvent(
                kind="budget_refused",
                message=f"fleet budget cap reached: {refused.describe()}",
                run_id=held.run_id,
                cycle=held.cycle,
                details={"scope": f"fleet-{refused.scope}", "key": refused.key, "unit": refused.unit},
            )
        )
        raise Refusal(
            402,
            "billing_error",
            f"budget cap: {refused.describe()}; lower max_tokens or the request's size, "
            "or idle until the fleet's budget resets",
            {"x-should-retry": "false"},
        )

    def record(
        self, call: Call, settled: Settlement, *, stream: bool, status: int, message_id: str | None, complete: bool
    ) -> None:
        """Settle the call's reservation to the usage `settle.py` decided from the upstream's report."""
        held = call.reservation
        if held is None:
            return
        usage = settled.usage
        price = self.config.pricing.price_for(held.model)
        cost = settled_cost(price, settled, held.cost_usd) if price is not None else held.cost_usd
        if settled.notes:
            self.emit_throttled("upstream_error", f"upstream usage not taken as reported: {settled.note}")
        if usage.total_tokens > held.usage.total_tokens or cost > held.cost_usd:
            self.emit_throttled(
                "reservation_exceeded",
                f"upstream reported more usage than the worst case "
                f"reserved ({usage.total_tokens} > {held.usage.total_tokens} tokens)",
            )
        entry = LedgerEntry(
            ts=utc_now(),
            run_id=call.run_id,
            cycle=call.cycle,
            model=held.model,
            stream=stream,
            status=status,
            message_id=message_id,
            complete=complete,
            usage=usage,
            cost_usd=cost,
            reservation=held.id,
            charged_day=held.day,
            note=settled.note,
        )
        try:
            self.ledger.append(entry)
        finally:  # the usage is real even when the local ledger cannot record it
            if self.fleet is not None:
                self.fleet.settle(held.id, usage.total_tokens, cost)
        self.guard.after_spend(call.cycle, call.run_id)

    def release(self, call: Call, reason: str) -> None:
        """End a reservation that spent nothing (refused or failed upstream before any usage)."""
        if call.reservation is not None:
            try:
                self.ledger.append(Release(ts=utc_now(), id=call.reservation.id, reason=reason[:200]), sync=False)
            finally:
                if self.fleet is not None:
                    self.fleet.release(call.reservation.id)

    def count_refusal(self, kind: str) -> None:
        with self._refusals_lock:
            self._refusals[kind] = self._refusals.get(kind, 0) + 1

    def refusal_counts(self) -> dict[str, int]:
        with self._refusals_lock:
            return dict(self._refusals)

    def ledger_failed(self, exc: LedgerError) -> None:
        self._ledger_error = exc
        self._emit(RouteEvent(kind="ledger_failed", message=f"LLM route ledger failed, forwarding stopped: {exc}"))

    def emit_throttled(self, kind: str, message: str) -> None:
        """Log and journal at most one event of a kind per interval, with how many were held back."""
        allowed, held_back = self._throttle.allow_counting(kind)
        if not allowed:
            return
        if held_back:
            message += f" ({held_back} more like it in the last interval)"
        log.warning("LLM route: %s", message)
        self._emit(RouteEvent(kind=kind, message=message))  # type: ignore[arg-type]

    def _emit(self, event: RouteEvent) -> None:
        try:
            self._on_event(event)
        except Exception:  # the supervisor's journal failing must not take the route down
            log.exception("LLM route: the event callback failed for %s", event.kind)


M_MMAP_THRESHOLD = -3  # glibc <malloc.h>


def fix_malloc_threshold(threshold: int = 128 * 1024) -> bool:
    """Keep big buffers (request bodies) in their own mappings, returned to the OS when freed.

    glibc raises its mmap threshold each time a large block is freed, so after the first 8 MiB body
    later ones come from the heap, whose freed memory a long-lived process keeps: 16 concurrent
    8 MiB bodies left the route at 351 MB RSS, 183 MB with the threshold fixed (bench/route_memory.py).
    A fixed threshold turns that adjustment off. No-op (False) where the C library is not glibc.
    """
    try:
        return bool(ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False


def _seconds_to_next_utc_day() -> int:
    now = utc_now()
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((tomorrow - now).total_seconds()))
