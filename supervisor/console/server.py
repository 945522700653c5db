"""The console's HTTP server: the standard library's ThreadingHTTPServer, GET only, read-only.

Loopback by default, and then only for a Host header naming loopback (a page elsewhere cannot read
it through DNS rebinding). Any other bind address requires an access token, sent as
`Authorization: Bearer <token>` (Prometheus) or once as `?token=` (a browser; it becomes a
SameSite=Strict, HttpOnly cookie). Every response carries a strict Content-Security-Policy: no
script runs, nothing loads from anywhere but this server.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import threading
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from supervisor.base.errors import ConfigError
from supervisor.base.generation_number import candidate_id_or_none, generation_number_or_none
from supervisor.console import metrics, pages
from supervisor.console.fleet_page import FleetView, fleet_page
from supervisor.console.text import safe
from supervisor.console.view import InstanceView
from supervisor.store.instance import Instance

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Cross-Origin-Resource-Policy": "same-origin",
}
COOKIE = "ouroboros_console"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]", "::1")


class ConsoleError(ConfigError):
    """The console cannot be served as asked (a public bind without a token, a bad address)."""


def parse_bind(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConsoleError(f"--bind {bind!r}: give HOST:PORT, e.g. 127.0.0.1:8788")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ConsoleServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, view: InstanceView, host: str, port: int, token: str | None) -> None:
        if not is_loopback(host) and not token:
            raise ConsoleError(f"binding {host} (not loopback) needs an access token: add --token")
        self.view = view
        self.fleet = FleetView(view)
        self.token = token
        self.loopback = is_loopback(host)
        self.refresh_lock = threading.Lock()
        super().__init__((host, port), Handler)

    def server_close(self) -> None:
        super().server_close()
        self.fleet.close()

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), self.server_address[1]
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


class Handler(BaseHTTPRequestHandler):
    server: ConsoleServer
    server_version = "ouroboros-console"
    sys_version = ""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        return  # no access log on stderr; the console is read-only and quiet

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self._serve(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(head=True)

    def _refuse_method(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"read-only: GET and HEAD only\n", "text/plain", head=False)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse_method  # noqa: N815

    def _serve(self, head: bool) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if self.server.loopback and not self._host_is_loopback():
            return self._send(
                HTTPStatus.MISDIRECTED_REQUEST, b"this console answers loopback names only\n", "text/plain", head
            )
        cookie = self._authorise(query)
        if cookie is False:
            return self._send(HTTPStatus.UNAUTHORIZED, b"access token required\n", "text/plain", head)
        try:
            status, body, kind = self._route(url.path, query)
        except Exception as exc:  # a broken record must not take the console down; say what broke
            status, body, kind = (
                HTTPStatus.INTERNAL_SERVER_ERROR,
                pages.page("Error", f"<pre>{safe(type(exc).__name__)}: {safe(exc, 2000)}</pre>").encode(),
                "text/html",
            )
        self._send(status, body, kind, head, cookie if isinstance(cookie, str) else None)

    def _host_is_loopback(self) -> bool:
        host = (self.headers.get("Host") or "").strip().lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name in LOOPBACK_NAMES

    def _authorise(self, query: dict[str, list[str]]) -> bool | str:
        """True: allowed; a string: allowed, set this cookie; False: refused."""
        token = self.server.token
        if not token:
            return True
        offered = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        if not offered:
            jar = SimpleCookie(self.headers.get("Cookie") or "")
            offered = jar[COOKIE].value if COOKIE in jar else ""
        if offered and hmac.compare_digest(offered.encode(), token.encode()):
            return True
        given = (query.get("token") or [""])[0]
        if given and hmac.compare_digest(given.encode(), token.encode()):
            return f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
        return False

    def _route(self, path: str, query: dict[str, list[str]]) -> tuple[HTTPStatus, bytes, str]:
        view = self.server.view
        if path == "/static/console.css":
            return HTTPStatus.OK, static_css(), "text/css"
        if path == "/favicon.ico":
            return HTTPStatus.NO_CONTENT, b"", "text/plain"
        with self.server.refresh_lock:
            view.refresh()
        html: str | None = None
        if path == "/":
            html = pages.main_page(view)
        elif path == "/metrics":
            body, kind = metrics.render(view, self.server.fleet)
            return HTTPStatus.OK, body, kind
        elif path.startswith("/g/") and (number := generation_number_or_none(path[3:])) is not None:
            html = pages.generation_page(view, number)
        elif path.startswith("/c/") and candidate_id_or_none(path[3:]) is not None:
            html = pages.candidate_page(view, path[3:])
        elif path == "/generations":
            before = (query.get("before") or [""])[0]
            if not before:
                html = pages.generations_page(view, 10**9)
            elif (number := generation_number_or_none(before)) is not None:
                html = pages.generations_page(view, number)
        elif path == "/fleet":
            html = fleet_page(self.server.fleet)
        elif path == "/log":
            html = pages.log_page(view)
        elif path == "/journal":
            html = pages.journal_page(view)
        elif path == "/scorecard.json":
            return HTTPStatus.OK, pages.scorecard_json(view, None).encode(), "application/json"
        if html is None:
            return HTTPStatus.NOT_FOUND, pages.page("Not found", "<p>nothing here</p>").encode(), "text/html"
        return HTTPStatus.OK, html.encode(), "text/html"

    def _send(self, status: HTTPStatus, body: bytes, kind: str, head: bool, cookie: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind if "charset" in kind else f"{kind}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in HEADERS.items():
            self.send_header(name, value)
        if cookie:
            self.send_header("Set-Cookie", cookie)
        self.end_headers()
        if not head:
            self.wfile.write(body)


def static_css() -> bytes:
    return resources.files("supervisor.console").joinpath("static/console.css").read_bytes()


def make_server(home: Path, bind: str = "127.0.0.1:8788", token: str | None = None) -> ConsoleServer:
    host, port = parse_bind(bind)
    return ConsoleServer(InstanceView(Instance.locate(home)), host, port, token)


def start_in_thread(home: Path, bind: str = "127.0.0.1:8788", token: str | None = None) -> ConsoleServer:
    """Serve the console from a daemon thread (what `supervisor start --console` uses); `.shutdown()` stops it."""
    server = make_server(home, bind, token)
    threading.Thread(target=server.serve_forever, name="console", daemon=True).start()
    return server


def new_token() -> str:
    return secrets.token_urlsafe(24)
