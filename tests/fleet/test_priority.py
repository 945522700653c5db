"""The priority rules (supervisor/store/tasks/priority.py): pure functions, checked value by value."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from supervisor.store.fleet_settings import PriorityWeights
from supervisor.store.tasks.models import NewTask
from supervisor.store.tasks.priority import (
    SCALE,
    FactorSource,
    PriorityHints,
    detect_language,
    health_rule,
    impact_rule,
    prioritise,
    render_breakdown,
    solvability_rule,
    urgency_rule,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)
BASE = "a" * 40


def task(**extra: object) -> NewTask:
    return NewTask.model_validate({"project": "demo", "title": "t", "base_commit": BASE, **extra})


def test_health_is_the_smoothed_recent_pass_rate() -> None:
    assert health_rule(0, 0) == (0.5, "no judged task of the project in the fleet yet")
    assert health_rule(8, 8)[0] == 0.9  # (8+1)/(8+2)
    assert health_rule(0, 8)[0] == 0.1
    assert health_rule(3, 4)[0] == round(4 / 6, 3)
    assert health_rule(9, 4)[0] == round(5 / 6, 3)  # never more passes than judged


@pytest.mark.parametrize(
    ("labels", "title", "body", "value"),
    [
        ((), "Segfault when parsing", "", 0.9),
        (("security",), "x", "", 0.9),
        ((), "x", "This leads to data loss on save", 0.9),
        ((), "Wrong result of mul", "", 0.6),
        (("bug",), "typo in docs", "", 0.6),  # the strongest class wins
        ((), "Fix typo in README", "", 0.2),
        ((), "Add a progress bar", "would be nice", 0.5),
        ((), "crashes", "", 0.9),
        ((), "crashing", "", 0.5),  # whole words only
    ],
)
def test_impact_from_labels_and_keywords(labels: tuple[str, ...], title: str, body: str, value: float) -> None:
    assert impact_rule(labels, title, body)[0] == value


def test_impact_reads_only_the_start_of_a_huge_statement() -> None:
    assert impact_rule((), "x", "a " * 20_000 + "security")[0] == 0.5


@pytest.mark.parametrize(
    ("tests", "length", "value"),
    [(0, 500, 0.4), (1, 500, 1.0), (5, 500, 0.8), (100, 500, 0.2), (1, 50, 0.6), (1, 6000, 0.5), (1, 4000, 0.75)],
)
def test_solvability_from_tests_and_statement_length(tests: int, length: int, value: float) -> None:
    assert solvability_rule(tests, length)[0] == value


def test_urgency_grows_with_age_and_urgent_labels() -> None:
    assert urgency_rule(None, NOW)[0] == 0.5
    assert urgency_rule(NOW, NOW)[0] == 0.0
    assert urgency_rule(NOW - timedelta(days=30), NOW)[0] == 0.5
    assert urgency_rule(NOW - timedelta(days=270), NOW)[0] == 0.9
    assert urgency_rule(NOW + timedelta(days=3), NOW)[0] == 0.0  # a date in the future is age 0
    assert urgency_rule(datetime(2026, 5, 2), NOW)[0] == 0.5  # naive dates are UTC
    assert urgency_rule(NOW, NOW, ["Critical"])[0] == 0.9


def test_the_breakdown_sums_weight_times_factor_and_scales() -> None:
    new = task(title="Crash on empty input", body="x" * 500, fail_to_pass=["t::a"])
    hints = PriorityHints(urgency=0.2, labels=["bug"])
    breakdown = prioritise(new, hints, PriorityWeights(), (3, 4), NOW)
    f = breakdown.factors
    assert list(f) == ["health", "impact", "solvability", "urgency"]
    assert (f["health"].value, f["impact"].value, f["solvability"].value, f["urgency"].value) == (
        round(4 / 6, 3),
        0.9,
        1.0,
        0.2,
    )
    assert f["urgency"].source is FactorSource.GIVEN and f["impact"].source is FactorSource.RULE
    expected = round(4 / 6, 3) * 1.0 + 0.9 * 2.0 + 1.0 * 1.5 + 0.2 * 0.5
    assert breakdown.total == pytest.approx(expected) and breakdown.priority == round(expected * SCALE)
    assert all(e.product == pytest.approx(e.value * e.weight) for e in f.values())
    other = prioritise(new, hints, PriorityWeights(impact=0, urgency=4), (3, 4), NOW)
    assert other.factors["impact"].product == 0 and other.factors["urgency"].product == pytest.approx(0.8)
    text = "\n".join(render_breakdown(breakdown))
    assert "impact       0.900 × 2 = 1.800  rule: severe keyword(s)" in text and "urgency" in text


def test_all_given_factors_are_taken_as_they_are() -> None:
    hints = PriorityHints(health=1, impact=1, solvability=1, urgency=1)
    breakdown = prioritise(task(), hints, PriorityWeights(), (0, 9), NOW)
    assert breakdown.total == 5.0 and breakdown.priority == 5000
    assert {e.source for e in breakdown.factors.values()} == {FactorSource.GIVEN}


@pytest.mark.parametrize(
    "bad",
    [{"impact": 1.5}, {"health": -0.1}, {"urgency": "high"}, {"labels": "bug"}, {"language": "Py thon"},
     {"colour": "red"}, {"labels": ["x"] * 51}, {"created_at": "yesterday"}],
)  # fmt: skip
def test_bad_hints_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        PriorityHints.model_validate(bad)


def test_language_from_file_extensions() -> None:
    assert detect_language(["a.py", "b/c.py", "x.js", "README.md"]) == "python"
    assert detect_language(["x.ts", "y.tsx", "z.py"]) == "typescript"
    assert detect_language(["a.go", "b.rs"]) == "go"  # a tie: by name
    assert detect_language(["README", "LICENSE", "Makefile"]) is None
    assert detect_language([]) is None
    assert detect_language(["src/Main.JAVA"]) == "java"
