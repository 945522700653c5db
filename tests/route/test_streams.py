"""Streams that end badly: a client that hangs up, an upstream that stops early, one past the deadline."""

from __future__ import annotations

import json
import socket
import time

import anthropic
import pytest
from route_helpers import MODEL, FakeUpstream

from scripted_model.sse import sse_events

USAGE = {"input_tokens": 70, "output_tokens": 300, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 5}
MESSAGE = {
    "id": "msg_s",
    "type": "message",
    "role": "assistant",
    "model": MODEL,
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": USAGE,
    "content": [{"type": "text", "text": "streamed words " * 30}],
}
EVENTS = list(sse_events(MESSAGE))


@pytest.fixture
def streaming_upstream():
    upstreams: list[FakeUpstream] = []

    def start(events: list[bytes], event_delay_s: float = 0.0) -> FakeUpstream:
        upstreams.append(FakeUpstream(stream=events, event_delay_s=event_delay_s))
        return upstreams[-1]

    yield start
    for upstream in upstreams:
        upstream.close()


def wait_for(condition, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert condition()


def test_a_client_that_hangs_up_mid_stream_is_still_charged_in_full(make_route, streaming_upstream):
    harness = make_route(streaming_upstream(EVENTS, event_delay_s=0.02).url)
    host, port = harness.route.url_tcp.removeprefix("http://").split(":")
    body = json.dumps(
        {"model": MODEL, "max_tokens": 400, "stream": True, "messages": [{"role": "user", "content": "x"}]}
    )
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.sendall(
            f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: {harness.credential}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode()
        )
        assert b"message_start" in raw.recv(65536)
    # the route drains the upstream to its end so the ledger holds the final usage, not the first event's
    wait_for(lambda: harness.route.ledger.totals.total.requests == 1)
    assert harness.route.ledger.totals.total.tokens == sum(USAGE.values())


def test_an_upstream_stream_cut_before_its_end_is_charged_for_what_arrived(make_route, streaming_upstream):
    cut = [event for event in EVENTS if b"message_delta" not in event and b"message_stop" not in event]
    harness = make_route(streaming_upstream(cut).url)
    with pytest.raises(anthropic.APIError):
        with harness.sdk().messages.stream(
            model=MODEL, max_tokens=400, messages=[{"role": "user", "content": "x"}]
        ) as events:
            events.get_final_message()
    wait_for(lambda: harness.route.ledger.totals.total.requests == 1)
    from supervisor.route.ledger import read_entries

    entry = read_entries(harness.ledger_path)[0][0]
    assert entry.complete is False and entry.stream is True
    # message_start's counts, its placeholder output count raised to the text that arrived (8 bytes a token)
    arrived = len("streamed words " * 30)
    assert entry.usage.input_tokens == 70 and entry.usage.output_tokens == arrived // 8


def test_a_stream_past_the_deadline_ends_with_an_error_event(make_route, streaming_upstream):
    upstream = streaming_upstream(EVENTS, event_delay_s=0.2)
    harness = make_route(upstream.url, {"upstream": {"base_url": upstream.url, "deadline_s": 0.5}})
    with pytest.raises(anthropic.APIError, match="deadline"):
        with harness.sdk().messages.stream(
            model=MODEL, max_tokens=400, messages=[{"role": "user", "content": "x"}]
        ) as events:
            events.get_final_message()
    wait_for(lambda: harness.route.ledger.totals.total.requests == 1)
    assert "upstream_error" in harness.kinds()
