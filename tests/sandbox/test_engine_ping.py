"""`ping` asks on a new connection: an engine that is stopping has closed its listener but still
answers on connections already open (dockerd closes its API listener first, then stops containers)."""

from __future__ import annotations

import os
import socketserver
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import docker

from sandbox.engine import DockerEngine


class _Daemon(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the engine's API

    def do_GET(self) -> None:  # noqa: N802 - the http.server hook's name
        body = b"OK"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def test_a_stopping_engine_that_answers_only_on_open_connections_is_not_healthy(tmp_path: Path):
    path = tmp_path / "engine.sock"
    server = _Server(str(path), _Daemon)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def client() -> docker.DockerClient:
        return docker.DockerClient(base_url=f"unix://{path}", version="1.41", timeout=5)

    pooled = client()
    engine = DockerEngine(pooled, client(), fresh_client=client)
    try:
        assert engine.ping()
        assert pooled.ping()  # a connection is now open and kept alive in the pool
        server.socket.close()  # what a stopping engine does first: no new connections
        os.unlink(path)
        assert pooled.ping()  # the open connection still answers: that is the trap
        assert not engine.ping()
    finally:
        server.shutdown()
        engine.close()
