"""The console's readers of generation numbers and candidate ids, over real HTTP: a number not
written as the supervisor writes it is a 404 page, never a 500 (and never another generation)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from urllib.parse import quote

import httpx2 as httpx
import pytest

from supervisor.console.server import ConsoleServer, make_server

from .helpers import synthetic_instance

HOSTILE = ["\u00b2", "\u0663", "0010", "00", "-1", "+1", " 1", "9" * 20, "1_0", "0x1"]


@pytest.fixture
def server(tmp_path) -> Iterator[ConsoleServer]:
    home = tmp_path / "home"
    synthetic_instance(home, 3)
    server = make_server(home, "127.0.0.1:0")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _raw_status(server: ConsoleServer, target: bytes) -> int:
    """The status line's code for a request line sent as raw bytes: a browser percent-encodes, but
    the server decodes whatever comes as Latin-1, so `0xB2` reaches the router as '²'."""
    with socket.create_connection(server.server_address[:2], timeout=10) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    return int(response.split(b" ")[1])


@pytest.mark.parametrize("text", [*HOSTILE, ""])
def test_a_generation_page_of_a_number_not_as_written_is_not_found(server: ConsoleServer, text: str) -> None:
    response = httpx.get(server.url + "g/" + quote(text))
    assert response.status_code == 404, response.text[:300]
    assert "Traceback" not in response.text
    if text.isascii() and " " not in text:
        assert _raw_status(server, b"/g/" + text.encode()) == 404


@pytest.mark.parametrize("raw", [b"\xb2", b"\xb3", b"\xb9", b"1\xb2", b"\xd9\xa3", b"\xc2\xb2", b"\xef\xbc\x93"])
def test_a_generation_page_of_other_digits_sent_raw_is_not_found(server: ConsoleServer, raw: bytes) -> None:
    """'²' (Latin-1 0xB2) is a digit to `str.isdigit` and not to `int`: this was a 500."""
    assert _raw_status(server, b"/g/" + raw) == 404
    assert _raw_status(server, b"/generations?before=" + raw) == 404
    assert _raw_status(server, b"/c/" + raw + b"-1") == 404


@pytest.mark.parametrize("text", HOSTILE)
def test_generations_before_a_number_not_as_written_is_not_found(server: ConsoleServer, text: str) -> None:
    response = httpx.get(server.url + "generations?before=" + quote(text))
    assert response.status_code == 404, response.text[:300]


@pytest.mark.parametrize("text", [f"{t}-1" for t in HOSTILE] + ["3-01", "3-\u00b2", "3-1-1"])
def test_a_candidate_page_of_an_id_not_as_written_is_not_found(server: ConsoleServer, text: str) -> None:
    assert httpx.get(server.url + "c/" + quote(text)).status_code == 404


def test_numbers_as_written_still_answer(server: ConsoleServer) -> None:
    assert httpx.get(server.url + "g/0").status_code == 200
    assert httpx.get(server.url + "g/3").status_code == 200
    assert httpx.get(server.url + "g/999999999").status_code == 404  # a number, but no such generation
    assert httpx.get(server.url + "generations").status_code == 200
    assert httpx.get(server.url + "generations?before=").status_code == 200
    assert httpx.get(server.url + "generations?before=2").status_code == 200
    assert httpx.get(server.url + "c/1-2").status_code == 200
