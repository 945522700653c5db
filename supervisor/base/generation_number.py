"""Generation numbers as the supervisor writes them: the one parser every reader uses.

A generation number is written in ASCII decimal, without sign, spaces or leading zeros ("0", "7",
"12"), at most `MAX_DIGITS` digits. `str.isdigit` and `int` take much more ('²', '٣', "0010",
"+1", " 1"): a reader that used them saw numbers no tag was given (git's version sort puts gen/0010
below gen/9, so a tag of that name counted by one reader was missed by another and its number given
again), and crashed on what `int` refuses ('²' is a digit to `isdigit`). So every reader, of tags,
of `supervisor rollback --to`, of the console's `/g/N`, of candidate ids and of the stores, parses
with this module, and anything else is not a generation number: a typed error that says why.
"""

from __future__ import annotations

import re

from supervisor.base.errors import OuroborosError

MAX_DIGITS = 9  # a generation per accepted proposal: a billion is beyond any lineage
TAG_NAME_PREFIX = "gen/"  # a generation's tag as people write it (the ref is refs/tags/gen/N)
_AS_WRITTEN = re.compile(rf"0|[1-9][0-9]{{0,{MAX_DIGITS - 1}}}")
_ASCII_DIGITS = re.compile(r"[0-9]+")
_CANDIDATE_ID = re.compile(r"([^-]*)-([^-]*)")


class GenerationNumberError(OuroborosError, ValueError):
    """Text that is not a generation number as the supervisor writes it; `reason` says why."""

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason
        super().__init__(f"{text[:40]!r} is not a generation number: {reason}")


def parse_generation_number(text: str) -> int:
    """The number `text` writes; GenerationNumberError unless it is ASCII decimal as written."""
    if _AS_WRITTEN.fullmatch(text):
        return int(text)
    raise GenerationNumberError(text, _why_not(text))


def generation_number_or_none(text: str) -> int | None:
    """The number `text` writes, or None (for readers to whom other text is simply something else)."""
    return int(text) if _AS_WRITTEN.fullmatch(text) else None


def looks_numeric(text: str) -> bool:
    """True for text meant as a number however written (any script's digits, signs, spaces, leading
    zeros): to tell a mistyped generation number from a commit name. A hex commit id that has a
    letter is not numeric; one of digits only is, and is read as a number if it is one as written."""
    stripped = text.strip().lstrip("+-")
    return bool(stripped) and all(char.isdigit() or char.isnumeric() for char in stripped)


def parse_candidate_id(text: str) -> tuple[int, int]:
    """`3-12` -> (3, 12): a candidate id is its generation and its number there, both as written."""
    match = _CANDIDATE_ID.fullmatch(text)
    if match is None:
        raise GenerationNumberError(text, "a candidate id is GENERATION-NUMBER, like 3-1")
    return parse_generation_number(match.group(1)), parse_generation_number(match.group(2))


def candidate_id_or_none(text: str) -> tuple[int, int] | None:
    try:
        return parse_candidate_id(text)
    except GenerationNumberError:
        return None


def _why_not(text: str) -> str:
    if not text:
        return "it is empty; pass a number such as 3"
    if text != text.strip():
        return "it has spaces around it; pass the digits alone, such as 3"
    if text[0] in "+-":
        return "a generation number has no sign; pass one such as 3"
    if not _ASCII_DIGITS.fullmatch(text):
        return "only the ASCII digits 0-9 are read; pass a number such as 3"
    if len(text) > 1 and text[0] == "0":
        return f"it has leading zeros; pass it as written: {text.lstrip('0') or '0'}"
    return f"more than {MAX_DIGITS} digits is beyond any generation"


def generation_named(text: str) -> int | None:
    """The generation `text` names when it is meant as one (`3`, `gen/3`); None when it is something
    else (a commit name such as `a1b2c3d` or `main`); GenerationNumberError when it is meant as a
    number but not written as one (`gen/x`, `0010`, `²`, `-1`, empty): never read as a commit name instead."""
    name = text.removeprefix(TAG_NAME_PREFIX)
    if name != text or not name or looks_numeric(name):
        return parse_generation_number(name)
    return None
