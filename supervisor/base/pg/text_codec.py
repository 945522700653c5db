"""Text PostgreSQL cannot hold, made storable: NUL (U+0000) is refused by TEXT and JSONB alike.

Hostile text (a task's title, a test id a project prints) may hold NUL, and the embedded queue keeps
it. Every str sent to the database and every TEXT or JSON value read back goes through one
reversible escape, registered on each pooled connection: NUL becomes ESC '0' and ESC (a private-use
character, U+E000) becomes ESC ESC. Text without either character is stored unchanged, so the
database stays readable and queryable for everything real.
"""

from __future__ import annotations

import json
import re
from typing import Any

import psycopg
from psycopg.abc import Buffer
from psycopg.types.json import set_json_dumps, set_json_loads
from psycopg.types.string import StrBinaryDumper, StrDumperUnknown, TextBinaryLoader, TextLoader

ESC = "\ue000"
_ESCAPED = re.compile(ESC + "(.)", re.DOTALL)


def escape(text: str) -> str:
    if "\x00" not in text and ESC not in text:
        return text
    return text.replace(ESC, ESC + ESC).replace("\x00", ESC + "0")


def unescape(text: str) -> str:
    if ESC not in text:
        return text
    return _ESCAPED.sub(lambda found: ESC if found.group(1) == ESC else "\x00", text)


def _tree(value: Any, change: Any) -> Any:
    if isinstance(value, str):
        return change(value)
    if isinstance(value, list):
        return [_tree(item, change) for item in value]
    if isinstance(value, dict):
        return {change(key): _tree(item, change) for key, item in value.items()}
    return value


def dumps(value: Any) -> str:
    return json.dumps(_tree(value, escape))


def loads(data: str | bytes) -> Any:
    return _tree(json.loads(data), unescape)


class EscapingStrDumper(StrDumperUnknown):
    def dump(self, obj: str) -> Buffer | None:
        return super().dump(escape(obj))


class EscapingStrBinaryDumper(StrBinaryDumper):
    def dump(self, obj: str) -> Buffer | None:
        return super().dump(escape(obj))


def _text(value: bytes | str) -> bytes | str:
    return unescape(value) if isinstance(value, str) else value  # bytes: a connection without an encoding


class UnescapingTextLoader(TextLoader):
    def load(self, data: Buffer) -> bytes | str:
        return _text(super().load(data))


class UnescapingTextBinaryLoader(TextBinaryLoader):
    def load(self, data: Buffer) -> bytes | str:
        return _text(super().load(data))


def register(conn: psycopg.Connection[Any]) -> None:
    """Make `conn` store and read back any text (the pool's `configure` step)."""
    conn.adapters.register_dumper(str, EscapingStrBinaryDumper)
    conn.adapters.register_dumper(str, EscapingStrDumper)  # registered last: the default for %s
    conn.adapters.register_loader("text", UnescapingTextLoader)
    conn.adapters.register_loader("text", UnescapingTextBinaryLoader)
    set_json_dumps(dumps, conn)
    set_json_loads(loads, conn)
