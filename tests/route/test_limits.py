"""The route's own limits and bad requests: each gets a clear Anthropic-style error, and the route lives on."""

from __future__ import annotations

import socket
import threading
import time

import anthropic
import pytest
from route_helpers import MODEL, scenario

USAGE = {"input_tokens": 1, "output_tokens": 1}
GOOD = {"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}


def error_of(response) -> tuple[int, str, str]:
    body = response.json()
    assert body["type"] == "error"
    return response.status_code, body["error"]["type"], body["error"]["message"]


@pytest.fixture
def harness(scripted, make_route):
    upstream = scripted(scenario(USAGE, repeat=True))
    return make_route(upstream.url, {"limits": {"max_body_bytes": 4096}})


def post(harness, path="/v1/messages", **kwargs):
    headers = {"x-api-key": harness.credential, "anthropic-version": "2023-06-01", **kwargs.pop("headers", {})}
    with harness.raw() as client:
        return client.post(path, headers=headers, **kwargs)


def read_until_closed(sock: socket.socket) -> str:
    parts = []
    while chunk := sock.recv(4096):
        parts.append(chunk)
    return b"".join(parts).decode()


def still_serves(harness) -> None:
    assert post(harness, json=GOOD).status_code == 200


def test_a_body_over_the_limit_is_refused_unread(harness):
    status, kind, message = error_of(post(harness, json={**GOOD, "pad": "x" * 5000}))
    assert (status, kind) == (413, "request_too_large")
    assert "at most 4096" in message
    still_serves(harness)


def test_bad_json_wrong_path_and_missing_model(harness):
    assert error_of(post(harness, content=b"{not json"))[:2] == (400, "invalid_request_error")
    assert error_of(post(harness, content=b"[1, 2]"))[2].startswith("body: must be a JSON object")
    assert error_of(post(harness, json={"max_tokens": 1}))[2].startswith("model:")
    status, kind, message = error_of(post(harness, path="/v1/complete", json=GOOD))
    assert (status, kind) == (404, "not_found_error") and "/v1/messages" in message
    with harness.raw() as client:
        assert error_of(client.get("/v1/models"))[:2] == (404, "not_found_error")
    still_serves(harness)


def test_a_model_without_a_price_is_refused_before_forwarding(scripted, make_route):
    upstream = scripted(scenario(USAGE, repeat=True))
    harness = make_route(upstream.url, {"policy": {"models": [MODEL, "claude-unknown-9"]}})
    status, kind, message = error_of(post(harness, json={**GOOD, "model": "claude-unknown-9"}))
    assert (status, kind) == (400, "invalid_request_error")
    assert "no price" in message and "[route.pricing.models]" in message
    assert upstream.steps_served == 0


def test_a_wrong_or_missing_credential_is_401(harness):
    status, kind, message = error_of(post(harness, json=GOOD, headers={"x-api-key": "sk-ant-guess"}))
    assert (status, kind) == (401, "authentication_error")
    with harness.raw() as client:
        assert client.post("/v1/messages", json=GOOD).status_code == 401
    assert "auth_refused" in harness.kinds()


def test_a_revoked_credential_stops_working(harness):
    harness.route.revoke_credential(harness.credential)
    with pytest.raises(anthropic.AuthenticationError, match="per-run credential"):
        harness.sdk().messages.create(**GOOD)


def test_a_request_without_content_length_is_refused(harness):
    host, port = harness.route.url_tcp.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.sendall(
            f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: {harness.credential}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".encode()
        )
        answer = read_until_closed(raw)
    assert answer.startswith("HTTP/1.1 411") and "Content-Length header is required" in answer
    still_serves(harness)


def test_garbage_on_the_socket_does_not_hurt_the_route(harness):
    host, port = harness.route.url_tcp.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.sendall(b"\x00\xff garbage \r\n\r\n")
        raw.recv(4096)
    still_serves(harness)


def test_request_rate_is_limited_with_retry_after(scripted, make_route):
    upstream = scripted(scenario(USAGE, repeat=True))
    harness = make_route(upstream.url, {"limits": {"rate_per_s": 0.5, "rate_burst": 3}})
    statuses = [post(harness, json=GOOD).status_code for _ in range(5)]
    assert statuses[:3] == [200, 200, 200]
    refused = post(harness, json=GOOD)
    assert error_of(refused)[:2] == (429, "rate_limit_error")
    assert int(refused.headers["retry-after"]) >= 1
    assert "limit_refused" in harness.kinds()


def test_concurrent_requests_past_the_limit_are_refused(make_route, slow_upstream):
    harness = make_route(slow_upstream.url, {"limits": {"max_concurrent": 2}})
    results: list[int] = []
    held = [threading.Thread(target=lambda: results.append(post(harness, json=GOOD).status_code)) for _ in range(2)]
    for thread in held:
        thread.start()
    deadline = time.monotonic() + 5
    while len(slow_upstream.headers) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    status, kind, message = error_of(post(harness, json=GOOD))
    assert (status, kind) == (429, "rate_limit_error") and "2 requests at once" in message
    slow_upstream.release.set()
    for thread in held:
        thread.join(10)
    assert results == [200, 200]
    assert len(slow_upstream.headers) == 2  # the refused one never went upstream


def test_the_upstream_deadline_answers_504(make_route, slow_upstream):
    harness = make_route(slow_upstream.url, {"upstream": {"base_url": slow_upstream.url, "deadline_s": 0.5}})
    started = time.monotonic()
    status, kind, message = error_of(post(harness, json=GOOD))
    assert (status, kind) == (504, "timeout_error")
    assert time.monotonic() - started < 5
    assert "upstream_error" in harness.kinds()


def test_an_unreachable_upstream_answers_502(make_route):
    spare = socket.socket()
    spare.bind(("127.0.0.1", 0))
    port = spare.getsockname()[1]
    spare.close()  # nothing listens there now
    harness = make_route(f"http://127.0.0.1:{port}")
    status, kind, message = error_of(post(harness, json=GOOD))
    assert (status, kind) == (502, "api_error") and "unreachable" in message


def test_connections_past_the_cap_are_closed(scripted, make_route):
    upstream = scripted(scenario(USAGE, repeat=True))
    harness = make_route(upstream.url, {"limits": {"max_connections": 2}})
    host, port = harness.route.url_tcp.removeprefix("http://").split(":")
    idle = [socket.create_connection((host, int(port)), timeout=5) for _ in range(2)]
    try:
        time.sleep(0.3)
        with socket.create_connection((host, int(port)), timeout=5) as third:
            third.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            assert third.recv(4096) == b""  # closed without an answer
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.3)
    still_serves(harness)


def test_a_ledger_that_cannot_be_written_stops_all_forwarding(scripted, make_route, monkeypatch):
    import errno

    import supervisor.route.ledger as ledger_module

    upstream = scripted(scenario(USAGE, repeat=True))
    harness = make_route(upstream.url)

    def disk_full(fd: int) -> None:  # fault injection: the one thing a test cannot make the disk do
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ledger_module.os, "fsync", disk_full)
    status, kind, message = error_of(post(harness, json=GOOD))
    assert (status, kind) == (500, "api_error") and "could not record spend" in message
    assert "ledger_failed" in harness.kinds()
    status, kind, message = error_of(post(harness, json=GOOD))
    assert (status, kind) == (503, "api_error") and "stopped forwarding" in message
    assert upstream.steps_served == 1  # nothing forwarded after the failure
    assert len(harness.route.ledger.totals.open) == 1  # the unsettled answer stays held at its worst case


def test_every_refusal_is_counted_by_type_though_its_events_are_throttled(harness):
    wrong = 25
    for _ in range(wrong):
        post(harness, json=GOOD, headers={"x-api-key": "sk-ant-guess"})
    post(harness, path="/v1/other", json=GOOD)
    counts = harness.route.refusal_counts()
    # past the auth-failure burst the route answers 429 instead of 401: every one is counted
    assert counts.get("authentication_error", 0) + counts.get("rate_limit_error", 0) == wrong
    assert counts["not_found_error"] == 1
    assert harness.kinds().count("auth_refused") <= 2  # the journal sees a throttled few
    post(harness, json=GOOD)  # a forwarded request is no refusal
    assert sum(harness.route.refusal_counts().values()) == wrong + 1


def test_connections_refused_past_the_cap_are_counted_and_their_log_lines_throttled(scripted, make_route, caplog):
    """Review: a hostile agent holds the cap's connections idle and then connects as fast as it can.
    Each refused connection must neither write its own log line (stderr, so the journal: it would
    flood it, and journald's rate limit then drops the supervisor's own messages too) nor go
    uncounted in ouroboros_route_refusals_total."""
    upstream = scripted(scenario(USAGE, repeat=True))
    harness = make_route(upstream.url, {"limits": {"max_connections": 2}})
    host, port = harness.route.url_tcp.removeprefix("http://").split(":")
    idle = [socket.create_connection((host, int(port)), timeout=5) for _ in range(2)]
    attempts = 200
    caplog.set_level("WARNING", logger="ouroboros.route")
    try:
        time.sleep(0.3)
        for _ in range(attempts):
            with socket.create_connection((host, int(port)), timeout=5) as extra:
                assert extra.recv(16) == b""  # closed without an answer: refused
    finally:
        for sock in idle:
            sock.close()
    refused_lines = [r for r in caplog.records if "connection" in r.getMessage() and "refused" in r.getMessage()]
    assert len(refused_lines) <= 2, f"{len(refused_lines)} log lines for {attempts} refused connections"
    assert sum(harness.route.refusal_counts().values()) >= attempts


def test_requests_too_malformed_to_parse_are_counted_as_refusals(harness):
    """Review: the standard library answers these itself (431 a header line too long, 501 an unknown method)
    before any route code runs; they are refusals too and an agent can send them in a loop."""
    host, port = harness.route.url_tcp.removeprefix("http://").split(":")
    for raw in (
        b"POST /v1/messages HTTP/1.1\r\nX: " + b"y" * 70_000 + b"\r\n\r\n",
        b"BREW /v1/messages HTTP/1.1\r\nHost: x\r\n\r\n",
    ):
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(raw)
            assert read_until_closed(sock).split(" ")[1] in ("431", "501")  # the status line's code
    assert sum(harness.route.refusal_counts().values()) == 2, harness.route.refusal_counts()
