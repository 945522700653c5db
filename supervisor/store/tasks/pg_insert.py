"""Inserting new tasks into the fleet's queue a chunk at a time, inside the caller's transaction.

Each chunk (at most CHUNK tasks) is validated as the queue contract asks (a task's text must be
storable; a (project, external_id) given twice in one add, a project the fleet does not know, or an
instance it already has refuses the add), then takes its ids in one statement (the `tasks.id`
identity's own sequence, sorted: the ids rise in the order the tasks were given, as a single add
would number them) and is inserted in one more, with those ids, sending back nothing. The caller's
transaction makes the chunks one add: all or none.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Any, TypeVar

from supervisor.base.pg.pool import Cursor
from supervisor.store.tasks.models import NewTask, TaskError
from supervisor.store.tasks.pg_rows import NEW_COLUMNS, TaskExtras, new_values
from supervisor.store.tasks.sqlite_schema import encodable, named

CHUNK = 1000  # tasks per INSERT: a large add holds about this many rows at once, not all of them

# NEW_COLUMNS, then factors, priority_breakdown, metadata: the types of the arrays unnest takes apart.
_TYPES = ("text", "text", "text", "text", "jsonb", "jsonb", "text", "int4", "text", "text", "jsonb", "jsonb", "jsonb")
_INSERT = (
    f"INSERT INTO tasks (id, {NEW_COLUMNS}, factors, priority_breakdown, metadata, state, created_at, updated_at)"
    " OVERRIDING SYSTEM VALUE SELECT u.*, 'queued', now(), now() FROM unnest(%b::int8[], "
    + ", ".join(f"%b::{kind}[]" for kind in _TYPES)
    + ") AS u"
)
_IDS = "SELECT nextval(pg_get_serial_sequence('tasks', 'id')) AS id FROM generate_series(1, %s)"

T = TypeVar("T")


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """`items` in lists of `size` (the last may be shorter), read as they are needed."""
    if size < 1:
        raise ValueError(f"a chunk of {size} items holds nothing")
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


class ChunkWriter:
    """Inserts the chunks of one add on `cursor`; remembers what the add gave so far (its keys, the
    projects found known) so a repeat across chunks is refused as within one."""

    def __init__(self, cursor: Cursor) -> None:
        self.cursor = cursor
        self._keys: set[tuple[str, str]] = set()
        self._projects: set[str] = set()

    def write(self, rows: Sequence[tuple[NewTask, TaskExtras]]) -> list[int]:
        """Insert `rows` (at most CHUNK); their new ids, in order. TaskError refuses the whole add."""
        if len(rows) > CHUNK:
            raise ValueError(f"{len(rows)} rows in one chunk; give at most {CHUNK}")
        batch = [(NewTask.model_validate(new.model_dump()), extras) for new, extras in rows]
        keys = []
        for new, _ in batch:
            encodable(new)
            if new.external_id is not None:
                key = (new.project, new.external_id)
                if key in self._keys:
                    raise TaskError(f"{named(key)} is given twice; give each once (nothing was queued)")
                self._keys.add(key)
                keys.append(key)
        if not batch:
            return []
        self._refuse_unknown_projects(sorted({new.project for new, _ in batch} - self._projects))
        self._refuse_duplicates(keys)
        self.cursor.execute(_IDS, (len(batch),))
        ids = sorted(int(row["id"]) for row in self.cursor.fetchall())
        values = [new_values(new) + extras.values() for new, extras in batch]
        columns: list[list[Any]] = [ids] + [list(column) for column in zip(*values, strict=True)]
        self.cursor.execute(_INSERT, columns)
        return ids

    def _refuse_unknown_projects(self, projects: list[str]) -> None:
        if not projects:
            return
        self.cursor.execute("SELECT name FROM projects WHERE name = ANY(%s::text[])", (projects,))
        known = {row["name"] for row in self.cursor.fetchall()}
        unknown = [name for name in projects if name not in known]
        if unknown:
            raise TaskError(
                f"no project {', '.join(repr(name) for name in unknown)} in the fleet; add the project first "
                "(nothing was queued)"
            )
        self._projects.update(projects)

    def _refuse_duplicates(self, keys: list[tuple[str, str]]) -> None:
        if not keys:
            return
        self.cursor.execute(
            "SELECT t.id, t.project, t.external_id FROM tasks t"
            " JOIN unnest(%s::text[], %s::text[]) AS k(project, external_id) USING (project, external_id)",
            ([key[0] for key in keys], [key[1] for key in keys]),
        )
        found = {(row["project"], row["external_id"]): row["id"] for row in self.cursor.fetchall()}
        for key in keys:
            if key in found:
                raise TaskError(
                    f"{named(key)} is already task {found[key]}; leave it out, or retry task {found[key]} "
                    "(nothing was queued)"
                )
