"""The route protects itself: cheap checks before the body is read, malformed headers answered 400
without a traceback, and a flood of wrong credentials throttled and logged at most once."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest
from route_helpers import MODEL, scenario

GOOD = b'{"model": "%s", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}' % MODEL.encode()


def raw_request(harness, headers: str, body: bytes = b"", *, credential: str | None = None, timeout: float = 5) -> str:
    host, port = harness.route.url_tcp.removeprefix("http://").split(":")
    key = harness.credential if credential is None else credential
    with socket.create_connection((host, int(port)), timeout=timeout) as conn:
        conn.sendall(f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\n{headers}\r\n".encode() + body)
        parts = []
        try:
            while chunk := conn.recv(65536):
                parts.append(chunk)
                if b"\r\n\r\n" in b"".join(parts) and b"Connection: close" not in b"".join(parts):
                    break
        except TimeoutError:
            pass
    return b"".join(parts).decode(errors="replace")


@pytest.mark.parametrize(
    "header",
    [
        "Content-Length: \u00b2",
        "Content-Length: 1_0",
        "Content-Length: -5",
        "Content-Length: 99999999999999999999",
        "Content-Length: 8\r\nContent-Length: 9",
    ],
)
def test_malformed_content_length_is_a_400_never_a_traceback(scripted, make_route, caplog, header):
    upstream = scripted(scenario({"input_tokens": 1, "output_tokens": 1}, repeat=True))
    harness = make_route(upstream.url)
    with caplog.at_level(logging.DEBUG, logger="ouroboros.route"):
        answer = raw_request(harness, header + "\r\n", b"12345678")
    assert answer.startswith("HTTP/1.1 400") or answer.startswith("HTTP/1.1 413"), answer[:200]
    assert "Traceback" not in caplog.text and not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert upstream.requests == []
    assert raw_request(harness, f"Content-Length: {len(GOOD)}\r\nConnection: close\r\n", GOOD).startswith(
        "HTTP/1.1 200"
    )


def test_concurrency_is_checked_before_the_body_is_read(make_route, slow_upstream):
    harness = make_route(slow_upstream.url, {"limits": {"max_concurrent": 1}})
    holder = threading.Thread(
        target=raw_request,
        args=(harness, f"Content-Length: {len(GOOD)}\r\n", GOOD),
        kwargs={"timeout": 30},
        daemon=True,
    )
    holder.start()
    deadline = time.monotonic() + 10
    while harness.route.gate.busy == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    # declares 4 MB and sends none of it: the answer must not wait for the body
    answer = raw_request(harness, "Content-Length: 4000000\r\n")
    assert answer.startswith("HTTP/1.1 429") and time.monotonic() - started < 2
    slow_upstream.release.set()


def test_a_flood_of_wrong_credentials_is_throttled_and_logged_once(scripted, make_route, caplog):
    upstream = scripted(scenario({"input_tokens": 1, "output_tokens": 1}, repeat=True))
    harness = make_route(upstream.url, {"limits": {"auth_failures_per_s": 1, "auth_failures_burst": 5}})
    statuses = []
    with caplog.at_level(logging.INFO, logger="ouroboros.route"):
        for n in range(300):
            answer = raw_request(harness, f"Content-Length: {len(GOOD)}\r\n", GOOD, credential=f"guess-{n}")
            statuses.append(answer[9:12])
    assert statuses.count("401") <= 8 and statuses.count("429") >= 290, statuses
    assert harness.kinds().count("auth_refused") == 1
    assert len([r for r in caplog.records if "credential" in r.getMessage()]) <= 1
    assert raw_request(harness, f"Content-Length: {len(GOOD)}\r\nConnection: close\r\n", GOOD).startswith(
        "HTTP/1.1 200"
    )
