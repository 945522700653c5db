"""Real git repositories for the project tests: plain sources, and servers that misbehave."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from supervisor.store.projects import ProjectConfig, ProjectRegistry
from tests.gate.repo_factory import git, write_tree


def make_source(root: Path, files: dict[str, str] | None = None, branch: str = "main") -> Path:
    """A normal (non-bare) repository with one commit on `branch` and a tag v1."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", branch)
    write_tree(root, files or {"calc.py": "def add(a, b):\n    return a + b\n", "README.md": "sample\n"})
    commit(root, "first")
    git(root, "tag", "v1")
    return root


def commit(root: Path, message: str) -> str:
    git(root, "add", "-A")
    git(root, "commit", "-q", "--no-verify", "-m", message)
    return git(root, "rev-parse", "HEAD")


def registry(tmp_path: Path) -> ProjectRegistry:
    return ProjectRegistry(tmp_path / "home" / "projects")


def config(name: str, source: Path | str, **fields: object) -> ProjectConfig:
    return ProjectConfig.model_validate({"name": name, "source": str(source), **fields})


def leftovers(registry: ProjectRegistry) -> list[str]:
    """Everything in HOME/projects but the lock folder."""
    if not registry.root.exists():
        return []
    return sorted(p.name for p in registry.root.iterdir() if p.name != ".locks")


@contextmanager
def silent_server() -> Iterator[str]:
    """A TCP server that accepts connections and never answers: a URL to it hangs until stopped."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/repo.git"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


class _AskForPassword(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="private"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        """Quiet."""


@contextmanager
def password_server() -> Iterator[str]:
    """A real HTTP server that answers every request with 401 (a private repository)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AskForPassword)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/private.git"
    finally:
        server.shutdown()
        server.server_close()
