"""Hostile text made harmless for HTML: escaped, with control characters shown, never acted on.

Everything the agent wrote (summaries, reasons, test names and messages, diffs, journals) passes
through `safe()`: markup characters become entities, and C0/C1 controls (ESC, CSI, BEL, ...) and
bidirectional overrides become visible placeholders, so neither a browser nor a terminal that a
copied line lands in acts on them.
"""

from __future__ import annotations

import html

from supervisor.base.text import plain


def safe(value: object, limit: int = 100_000) -> str:
    """Escaped for HTML text and attribute values alike."""
    return html.escape(plain(value, limit), quote=True)
