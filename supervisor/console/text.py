"""Hostile text made harmless for HTML: escaped, with control characters shown, never acted on.

Everything the agent wrote (summaries, reasons, test names and messages, diffs, journals) passes
through `safe()`: markup characters become entities, and C0/C1 controls (ESC, CSI, BEL, ...) and
bidirectional overrides become visible placeholders, so neither a browser nor a terminal that a
copied line lands in acts on them.
"""

from __future__ import annotations

import html
import re

_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return "\u241b" if code == 0x1B else f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def plain(value: object, limit: int = 100_000) -> str:
    """The text with controls replaced by visible stand-ins, cut at `limit` characters."""
    text = str(value if value is not None else "")
    cut = text[:limit] + ("\n… (cut)" if len(text) > limit else "")
    return _CONTROLS.sub(_visible, cut)


def safe(value: object, limit: int = 100_000) -> str:
    """Escaped for HTML text and attribute values alike."""
    return html.escape(plain(value, limit), quote=True)
