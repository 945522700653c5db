"""The one generation-number parser: ASCII decimal as the supervisor writes it, anything else a typed
error that says why (never `int`'s ValueError, never a number read from another script's digits)."""

from __future__ import annotations

import pytest

from supervisor.base.generation_number import (
    MAX_DIGITS,
    GenerationNumberError,
    candidate_id_or_none,
    generation_named,
    generation_number_or_none,
    parse_candidate_id,
    parse_generation_number,
)

# Each hostile spelling with a word its error must say (what is wrong, so the reader knows what to pass).
HOSTILE = {
    "\u00b2": "ASCII",  # superscript two: str.isdigit() says yes, int() raises
    "\u0663": "ASCII",  # Arabic-Indic three: int() reads it as 3
    "\uff13": "ASCII",  # fullwidth three
    "0010": "leading zeros; pass it as written: 10",
    "00": "leading zeros; pass it as written: 0",
    "-1": "no sign",
    "+1": "no sign",
    " 1": "spaces",
    "1 ": "spaces",
    "1\n": "spaces",
    "9" * 20: f"more than {MAX_DIGITS} digits",
    "1" * (MAX_DIGITS + 1): f"more than {MAX_DIGITS} digits",
    "": "empty",
    "1_000": "ASCII",  # int() takes underscores
    "0x10": "ASCII",
    "1e3": "ASCII",
    "3.0": "ASCII",
}


@pytest.mark.parametrize("text", ["0", "1", "7", "10", "123456789", "9" * MAX_DIGITS])
def test_a_number_as_written_is_read(text: str) -> None:
    assert parse_generation_number(text) == int(text)
    assert generation_number_or_none(text) == int(text)
    assert generation_named(text) == int(text)
    assert generation_named("gen/" + text) == int(text)


@pytest.mark.parametrize("text", sorted(HOSTILE))
def test_anything_else_is_a_typed_error_that_says_why(text: str) -> None:
    with pytest.raises(GenerationNumberError) as caught:
        parse_generation_number(text)
    assert HOSTILE[text] in str(caught.value)
    assert caught.value.text == text and caught.value.reason in str(caught.value)
    assert isinstance(caught.value, ValueError)  # callers that catch ValueError still do
    assert generation_number_or_none(text) is None


@pytest.mark.parametrize("text", sorted(HOSTILE))
def test_meant_as_a_number_is_never_taken_for_a_commit_name(text: str) -> None:
    """`rollback --to 0010` must not fall through to `git rev-parse 0010` and move main somewhere."""
    if text.strip() in ("1_000", "0x10", "1e3", "3.0"):  # not numeric to a reader: could name a ref
        assert generation_named(text) is None
        return
    with pytest.raises(GenerationNumberError):
        generation_named(text)
    with pytest.raises(GenerationNumberError):
        generation_named("gen/" + text)


@pytest.mark.parametrize("text", ["main", "a1b2c3d", "HEAD~1", "refs/tags/gen/3", "deadbeef" * 5])
def test_a_commit_name_is_no_generation(text: str) -> None:
    assert generation_named(text) is None


def test_a_long_error_text_is_cut() -> None:
    with pytest.raises(GenerationNumberError) as caught:
        parse_generation_number("\u00b2" * 10_000)
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize("good", ["0-1", "3-12", "123456789-987654321"])
def test_a_candidate_id_is_two_numbers_as_written(good: str) -> None:
    generation, number = good.split("-")
    assert parse_candidate_id(good) == (int(generation), int(number)) == candidate_id_or_none(good)


@pytest.mark.parametrize(
    "bad",
    ["3", "3-", "-1", "3-1-1", "03-1", "3-01", "\u00b2-1", "3-\u0663", "+3-1", " 3-1", "9" * 20 + "-1", "", "3_1"],
)
def test_anything_else_is_no_candidate_id(bad: str) -> None:
    with pytest.raises(GenerationNumberError):
        parse_candidate_id(bad)
    assert candidate_id_or_none(bad) is None
