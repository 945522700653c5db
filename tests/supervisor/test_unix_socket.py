"""Unix sockets bound at paths longer than a socket address holds (deep homes, deep scratch folders)."""

from __future__ import annotations

import os
import socket
import socketserver
import stat
import threading
from pathlib import Path

import pytest

from supervisor.base.unix_socket import MAX_PATH_BYTES, bind_address


class _Echo(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(self.rfile.readline())


def deep_folder(tmp_path: Path) -> Path:
    folder = tmp_path / ("d" * 60) / ("e" * 60) / ("f" * 60)
    folder.mkdir(parents=True)
    return folder


def connect(path: Path) -> socket.socket:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with bind_address(path) as address:  # the same alias works for connecting
        client.connect(address)
    return client


def test_a_short_path_is_bound_as_it_is(tmp_path):
    with bind_address(tmp_path / "s.sock") as address:
        assert address == str(tmp_path / "s.sock")


def test_a_socket_deeper_than_an_address_holds_is_bound_where_it_belongs(tmp_path):
    path = deep_folder(tmp_path) / "llm.sock"
    assert len(os.fsencode(path)) > MAX_PATH_BYTES
    with pytest.raises(OSError):  # the plain way fails: this is the case being handled
        socketserver.UnixStreamServer(str(path), _Echo)
    with bind_address(path) as address:
        server = socketserver.UnixStreamServer(address, _Echo)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        assert stat.S_ISSOCK(os.lstat(path).st_mode)  # in the folder itself: clearing the folder clears it
        client = connect(path)
        client.sendall(b"hello\n")
        assert client.recv(100) == b"hello\n"
        client.close()
    finally:
        server.shutdown()
        server.server_close()
    assert str(path.parent) not in open_paths()  # the folder's descriptor is not kept open


def open_paths() -> set[str]:
    paths = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            paths.add(os.readlink(f"/proc/self/fd/{name}"))
        except FileNotFoundError:
            pass  # the listing's own descriptor, closed by now
    return paths


def test_the_route_listens_in_a_deep_home(tmp_path):
    from supervisor.route import Ledger, LLMRoute, RouteConfig, Upstream

    path = deep_folder(tmp_path) / "run" / "llm.sock"
    config = RouteConfig.model_validate(
        {"upstream": {"base_url": "http://127.0.0.1:9"}, "policy": {"models": ["claude-sonnet-5-5"]}}
    )
    ledger = Ledger.open(tmp_path / "ledger.jsonl")
    route = LLMRoute(
        config, ledger, Upstream.from_config(config.upstream, environ={"ANTHROPIC_API_KEY": "k"}), socket_path=path
    ).start()
    try:
        client = connect(path)
        client.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        assert client.recv(100).startswith(b"HTTP/1.")  # served (refused: no credential)
        client.close()
    finally:
        route.stop()
        ledger.close()
