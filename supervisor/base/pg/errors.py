"""Errors of the fleet's database, each said as what was wrong and what to do (never a traceback).

Importable without psycopg (the loop catches these on every instance; only a fleet node has psycopg).
"""

from __future__ import annotations

from supervisor.base.errors import OuroborosError


class DatabaseError(OuroborosError):
    """The fleet's database refused us (a wrong password, no such database, a schema we do not know)."""


class DatabaseUnavailable(DatabaseError):
    """The database cannot be reached now; nothing was changed, the same call may be made again later."""


class SchemaMismatch(DatabaseError):
    """The database's schema is older or newer than this node knows."""


def explain(exc: BaseException, where: str) -> DatabaseError:
    """One clear error for a failed connection or call to the database at `where` (host:port/name)."""
    import psycopg
    import psycopg_pool

    text = " ".join(str(exc).split()) or type(exc).__name__
    lowered = text.lower()
    if isinstance(exc, psycopg_pool.PoolTimeout):
        return DatabaseUnavailable(
            f"no connection to the fleet database {where} within the wait ({text}); it is down, unreachable or "
            "overloaded: nothing was changed, the node tries again"
        )
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return DatabaseError(
            f"the fleet database {where} refused the password ({text}); check [fleet] password_env or "
            "password_file (the password is never in ouroboros.toml)"
        )
    if "database" in lowered and "does not exist" in lowered:
        return DatabaseError(
            f"the fleet database {where} does not exist ({text}); create it (`createdb NAME` on the server), "
            "then run `supervisor fleet migrate`"
        )
    if "role" in lowered and "does not exist" in lowered:
        return DatabaseError(f"the fleet database {where} has no such user ({text}); fix the user in [fleet] database")
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | OSError):
        return DatabaseUnavailable(
            f"cannot reach the fleet database {where} ({text}); start PostgreSQL or fix [fleet] database: "
            "nothing was changed, the node tries again"
        )
    return DatabaseError(f"the fleet database {where} failed: {text}")
