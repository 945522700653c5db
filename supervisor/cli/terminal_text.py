"""Text from the agent made safe to print on an operator's terminal.

Anything the agent wrote (a proposal's summary and reason, test names and messages, its output,
file names and contents in a diff) may carry escape sequences: clear the screen, conceal text,
move the cursor over a line of a diff, set the window title, write the clipboard (OSC 52), or
reorder what is shown (bidi overrides). Every such character is printed as a visible escape
(`\\x1b`, `\\u202e`) instead, so what the operator reads is what is there.
"""

from __future__ import annotations

import re
import unicodedata

import click

# Only characters outside printable ASCII (and newline, tab) are looked at one by one.
SUSPECT = re.compile(r"[^\x20-\x7e\n\t]")
# Categories shown escaped: controls (C0, DEL, C1), format characters (bidi overrides and
# isolates, zero-width characters), surrogates (undecodable bytes), private use, unassigned,
# and the line/paragraph separators that some terminals treat as newlines.
ESCAPED_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    return _escape(char) if unicodedata.category(char) in ESCAPED_CATEGORIES else char


def terminal_safe(text: str) -> str:
    """`text` with every control, format and separator character (but newline and tab) escaped."""
    return SUSPECT.sub(_visible, text)


def echo(text: str = "", nl: bool = True, err: bool = False) -> None:
    """click.echo for text that may hold anything the agent wrote."""
    click.echo(terminal_safe(text), nl=nl, err=err)
