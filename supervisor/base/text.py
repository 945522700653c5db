"""Text the agent chose, made safe to keep and to show: bytes escaped, controls made visible.

`printable` is for names (file names, refs) that may carry undecodable bytes; `plain` shows
control and bidirectional-override characters as visible placeholders and bounds the length.
HTML escaping (`supervisor.console.text`) and terminal escaping (`supervisor.cli.terminal_text`)
build on these.
"""

from __future__ import annotations

import re

_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """Any name the agent chose, as text that every JSON writer and terminal can take (bytes escaped)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return "\u241b" if code == 0x1B else f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def plain(value: object, limit: int = 100_000) -> str:
    """The text with controls replaced by visible stand-ins, cut at `limit` characters."""
    text = str(value if value is not None else "")
    cut = text[:limit] + ("\n… (cut)" if len(text) > limit else "")
    return _CONTROLS.sub(_visible, cut)
