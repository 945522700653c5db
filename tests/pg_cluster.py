"""A throw-away PostgreSQL cluster for tests and benchmarks: `initdb` and `pg_ctl` on a temporary folder.

The server listens on 127.0.0.1 at a free port (password authentication, as a fleet's server would)
and on a unix socket inside the folder; it is stopped and the folder removed at the end. As root,
initdb and the server run as the `postgres` user (initdb refuses root). Durability is switched off:
this cluster's data is thrown away.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg

USER = "fleet"
SERVER_SETTINGS = [
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "max_connections=400",
    "shared_buffers=128MB",
    "log_min_messages=fatal",
]


def pg_bin() -> Path | None:
    """The folder of PostgreSQL's programs: pg_ctl on PATH, else the newest /usr/lib/postgresql/N/bin."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    return versions[-1].parent if versions else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PgCluster:
    bin: Path
    folder: Path
    port: int
    password: str
    runas: str | None
    options: str = ""

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def url(self, dbname: str, user: str = USER) -> str:
        """The URL a node is configured with: no password in it."""
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.url(dbname), password=self.password, autocommit=True)

    def create_database(self, name: str, template: str | None = None) -> str:
        with self.connect() as conn:
            suffix = f" TEMPLATE {template}" if template else ""
            conn.execute(f'CREATE DATABASE "{name}"{suffix}'.encode())
        return name

    def fresh_name(self) -> str:
        return f"t_{uuid.uuid4().hex[:16]}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.runas:
            command = ["runuser", "-u", self.runas, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

    def pg_ctl(self, *args: str) -> None:
        result = self._run("pg_ctl", "-D", str(self.data), "-w", *args)
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl {' '.join(args)} failed: {result.stderr or result.stdout}")

    def start_server(self) -> None:
        self.pg_ctl("start", "-o", self.options, "-l", str(self.folder / "server.log"))

    def stop_server(self) -> None:
        self.pg_ctl("stop", "-m", "fast")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)


def start_cluster() -> PgCluster:
    """A running cluster; RuntimeError (with the server's words) when it cannot start."""
    binary = pg_bin()
    if binary is None:
        raise RuntimeError("PostgreSQL is not installed (no pg_ctl); `apt-get install postgresql-15`")
    runas = "postgres" if os.geteuid() == 0 else None
    folder = Path(tempfile.mkdtemp(prefix="ouroboros-pg-"))
    if runas:
        owner = pwd.getpwnam(runas)
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    password = secrets.token_hex(16)
    pwfile = folder / "pw"
    pwfile.write_text(password + "\n")
    if runas:
        os.chown(pwfile, owner.pw_uid, owner.pw_gid)
    pwfile.chmod(0o600)
    cluster = PgCluster(binary, folder, _free_port(), password, runas)
    init = cluster._run(
        "initdb", "-D", str(cluster.data), "-U", USER, "--pwfile", str(pwfile), "--auth-local=trust",
        "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync",
    )  # fmt: skip
    pwfile.unlink()
    if init.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {init.stderr or init.stdout}")
    cluster.options = " ".join(f"-c {setting}" for setting in SERVER_SETTINGS)
    cluster.options += f" -c listen_addresses=127.0.0.1 -p {cluster.port} -k {folder}"
    try:
        cluster.start_server()
    except RuntimeError:
        log = (folder / "server.log").read_text(errors="replace") if (folder / "server.log").exists() else ""
        cluster.stop()
        raise RuntimeError(f"the test PostgreSQL did not start: {log[-2000:]}") from None
    return cluster
