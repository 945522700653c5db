"""A pool of connections to the fleet's PostgreSQL: one `Database` per process, short transactions only.

Every connection carries the node's name (`application_name`, seen in pg_stat_activity), a connect
timeout, and the NUL-safe text codec (text_codec.py). The pool checks a connection before handing
it out (`alive_or_checked`), so one the server closed (a restart, pg_terminate_backend) is
replaced, never used; connections are also renewed after `max_lifetime_s`. The check costs no round
trip for a healthy connection: a server that ends a connection sends a termination notice and closes
its end, which makes the idle socket readable, and only a readable socket gets the full check
(`ConnectionPool.check_connection`, an empty query).
A failure becomes a DatabaseError that says what to do (errors.py), never a psycopg traceback: an
unreachable server a DatabaseUnavailable, anything else the server refused (a read-only standby, a
trigger) a DatabaseError naming it; only a constraint violation (IntegrityError) is left to the
caller, who may expect it.

Once a call found the server unreachable, the next call first tries one direct connection (refused
at once, or within `connect_timeout_s`) instead of waiting `wait_s` for a pool that cannot connect:
a caller on an event loop that retries during an outage is never held for long. The first
successful try drops the connections the outage broke and clears the mark.
"""

from __future__ import annotations

import select
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from supervisor.base.errors import ConfigError
from supervisor.base.pg import text_codec
from supervisor.base.pg.errors import DatabaseError, DatabaseUnavailable, explain

Row = dict[str, Any]
Cursor = psycopg.Cursor[Row]


def check_url(url: str) -> str:
    """A postgresql:// URL without a password in it (the password comes from password_env/password_file)."""
    if not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"{url!r} is not a postgresql:// URL; give postgresql://USER@HOST:PORT/DATABASE")
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"cannot read the database URL ({exc}); give postgresql://USER@HOST:PORT/DATABASE") from exc
    if "password" in parts or "passfile" in parts:
        raise ConfigError(
            "the database URL holds a password; remove it and set [fleet] password_env or password_file instead"
        )
    return url


def describe(url: str) -> str:
    """host:port/name of a URL, for messages (no user, no options)."""
    parts = conninfo_to_dict(url)
    return f"{parts.get('host', 'localhost')}:{parts.get('port', '5432')}/{parts.get('dbname', '')}"


def alive_or_checked(conn: psycopg.Connection[Row]) -> None:
    """The pool's check before it lends `conn`: raises when the connection is dead.

    An idle connection's socket has nothing to read unless the server sent something unasked: the
    notice and end-of-file of a connection it terminated (restart, pg_terminate_backend, idle
    timeout), or, rarely, an asynchronous notice. Only then is the full check made; a quiet socket is
    lent as it is (a peer that vanished without closing is found by the next query either way, and
    that query's failure is a DatabaseUnavailable)."""
    if conn.closed:
        raise psycopg.OperationalError("the connection is closed")
    if _has_news(conn.fileno()):
        ConnectionPool.check_connection(conn)


def _has_news(fd: int) -> bool:
    """The socket has something to read, or was hung up or broken, now (no wait).

    poll(), not select(): select() refuses a descriptor numbered 1024 or more (a node with many files
    open, a raised RLIMIT_NOFILE as in a container), which would fail every check and lend nothing."""
    watch = select.poll()
    watch.register(fd, select.POLLIN | select.POLLPRI)  # POLLHUP, POLLERR and POLLNVAL are always said
    return bool(watch.poll(0))


class Database:
    """The fleet database of one process; `transaction()` lends a connection for one short transaction."""

    def __init__(
        self,
        url: str,
        *,
        password: str | None,
        application_name: str,
        min_size: int = 2,
        max_size: int = 10,
        connect_timeout_s: float = 5.0,
        max_lifetime_s: float = 1800.0,
        wait_s: float = 30.0,
    ) -> None:
        self.where = describe(check_url(url))
        self.application_name = application_name
        self._conninfo = make_conninfo(
            url, application_name=application_name[:63], connect_timeout=max(1, round(connect_timeout_s))
        )
        self._password = password
        self._connect_timeout_s = connect_timeout_s
        self._down = False  # the last call found the server unreachable: the next one probes it first
        self._pool: ConnectionPool[psycopg.Connection[Row]] = ConnectionPool(
            self._conninfo,
            kwargs={"password": password, "row_factory": dict_row} if password else {"row_factory": dict_row},
            min_size=min_size,
            max_size=max_size,
            open=False,
            configure=text_codec.register,
            check=alive_or_checked,
            max_lifetime=max_lifetime_s,
            timeout=wait_s,
            name=application_name,
        )

    def _connect_once(self) -> None:
        """One direct connection, closed at once: DatabaseError (what to do) when it fails."""
        try:
            with (
                psycopg.connect(self._conninfo, password=self._password)
                if self._password
                else psycopg.connect(self._conninfo)
            ):
                pass
        except psycopg.Error as exc:
            raise explain(exc, self.where) from None

    def _probe(self) -> None:
        """After a call found the server gone: fail fast while it still is; once it answers, replace the
        connections the outage broke before lending one."""
        self._connect_once()
        self._down = False
        self._pool.check()

    def _failed(self, exc: BaseException) -> DatabaseError:
        error = explain(exc, self.where)
        if isinstance(error, DatabaseUnavailable):
            self._down = True
        return error

    def open(self) -> Database:
        """Connect once directly (so a wrong password or host is one clear error), then fill the pool."""
        self._connect_once()
        try:
            self._pool.open(wait=True, timeout=max(self._connect_timeout_s * 2, 5.0))
        except PoolTimeout as exc:
            self._pool.close()
            raise explain(exc, self.where) from None
        return self

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        """A cursor inside one transaction: committed when the block ends, rolled back on an error."""
        if self._down:
            self._probe()
        try:
            with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
                yield cursor
        except psycopg.IntegrityError:
            raise  # a constraint the caller may expect (a repeated key): its own to say
        except (psycopg.Error, PoolTimeout) as exc:
            raise self._failed(exc) from None

    @contextmanager
    def statement(self) -> Iterator[Cursor]:
        """A cursor whose every execute is a transaction of its own (autocommit): a write that is one
        statement costs one round trip, not three (BEGIN, the statement, COMMIT)."""
        if self._down:
            self._probe()
        try:
            with self._pool.connection() as conn:
                conn.autocommit = True
                try:
                    with conn.cursor() as cursor:
                        yield cursor
                finally:
                    if not conn.closed:
                        conn.autocommit = False
        except psycopg.IntegrityError:
            raise  # a constraint the caller may expect (a repeated key): its own to say
        except (psycopg.Error, PoolTimeout) as exc:
            raise self._failed(exc) from None

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Row]]:
        """A pooled connection for a caller that manages its own transactions (migrations)."""
        if self._down:
            self._probe()
        try:
            with self._pool.connection() as conn:
                yield conn
        except psycopg.IntegrityError:
            raise  # a constraint the caller may expect (a repeated key): its own to say
        except (psycopg.Error, PoolTimeout) as exc:
            raise self._failed(exc) from None

    def check(self) -> None:
        """Test every idle connection now, replacing the broken ones (after an outage: before a caller
        meets them one by one, each costing the pool's backoff)."""
        self._pool.check()

    def stats(self) -> dict[str, int]:
        return dict(self._pool.get_stats())

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


__all__ = ["Cursor", "Database", "DatabaseError", "Row", "check_url", "describe"]
