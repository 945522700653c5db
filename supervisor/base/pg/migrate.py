"""Versioned migrations of the fleet's schema: migrations/NNN_name.sql, applied in order, each once.

Migrations are applied in the order of their numbers, which need not be consecutive (each part of the
schema keeps its own range: the task queue from 001, the fleet's budget from 010).
`schema_migrations` holds what was applied (version, name, checksum, when). `migrate` applies each
missing migration in its own transaction under a transaction-scoped advisory lock, so two nodes
migrating at once are serialised and the second finds nothing left to do; a failed migration rolls
back whole. `check_schema` is what a node runs at start: it refuses a database older than it knows
(run `supervisor fleet migrate`) or newer (upgrade this node), and a migration changed after it ran.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from supervisor.base.pg.errors import DatabaseError, SchemaMismatch
from supervisor.base.pg.pool import Cursor, Database

MIGRATIONS = Path(__file__).with_name("migrations")
LOCK_KEY = 0x6F75_726F_626F_726F  # "ouroboro": the one advisory lock migrations take
_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(folder: Path = MIGRATIONS) -> list[Migration]:
    """The migrations in `folder`, sorted by number (gaps allowed; a number used twice is refused)."""
    found: dict[int, Migration] = {}
    for path in folder.glob("*.sql"):
        match = _FILE.match(path.name)
        if match is None:
            raise DatabaseError(f"{path} is not named NNN_name.sql; rename it")
        version = int(match.group(1))
        if version == 0 or version in found:
            raise DatabaseError(f"migration number {version:03d} in {folder} is 000 or used twice; renumber it")
        found[version] = Migration(version, match.group(2), path.read_text(encoding="utf-8"))
    return [found[version] for version in sorted(found)]


def latest(migrations: list[Migration]) -> int:
    """The schema version a set of migrations brings a database to: the highest number (0 for none)."""
    return max((m.version for m in migrations), default=0)


def applied(cursor: Cursor) -> dict[int, tuple[str, str]]:
    """Applied versions with their name and checksum; empty when the table does not exist yet."""
    cursor.execute("SELECT to_regclass('schema_migrations') IS NOT NULL AS present")
    row = cursor.fetchone()
    if row is None or not row["present"]:
        return {}
    cursor.execute("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
    return {int(r["version"]): (str(r["name"]), str(r["checksum"])) for r in cursor.fetchall()}


def _refuse_newer(done: dict[int, tuple[str, str]], known: list[Migration]) -> None:
    newest = max(done, default=0)
    if newest > latest(known):
        raise SchemaMismatch(
            f"the fleet database has schema {newest}, and this node knows up to {latest(known)}: this node is older "
            f"than the database's schema {newest}; upgrade it (nothing was changed)"
        )


def migrate(db: Database, migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply every migration not applied yet, each in one transaction; the ones applied now."""
    known = load_migrations() if migrations is None else migrations
    done_now = []
    for migration in known:
        with db.transaction() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            cursor.execute(_TABLE)
            done = applied(cursor)
            _refuse_newer(done, known)
            if migration.version in done:
                continue
            cursor.execute(migration.sql.encode())  # bytes: no parameters, several statements
            cursor.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
            done_now.append(migration)
    return done_now


def schema_version(db: Database) -> int:
    with db.transaction() as cursor:
        return max(applied(cursor), default=0)


def check_schema(db: Database, migrations: list[Migration] | None = None) -> int:
    """The database's schema version when it is exactly the one this node knows; SchemaMismatch otherwise."""
    known = load_migrations() if migrations is None else migrations
    with db.transaction() as cursor:
        done = applied(cursor)
    _refuse_newer(done, known)
    missing = [m for m in known if m.version not in done]
    if missing:
        have = max(done, default=0)
        raise SchemaMismatch(
            f"the fleet database has schema {have}, older than this node's {latest(known)} (missing: "
            f"{', '.join(f'{m.version:03d}_{m.name}' for m in missing)}); run `supervisor fleet migrate`"
        )
    for migration in known:
        name, checksum = done[migration.version]
        if checksum != migration.checksum:
            raise SchemaMismatch(
                f"migration {migration.version:03d}_{migration.name} in the fleet database differs from this "
                f"node's copy (applied as {name!r}); nodes of different builds share it: run one release everywhere"
            )
    return latest(known)
