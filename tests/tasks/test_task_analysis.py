"""The analysis answer is text from outside: exactly one estimate in range, or refused whole (pure logic)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from supervisor.store.fleet_settings import PriorityWeights
from supervisor.store.tasks.analysis import (
    MARKER,
    AnalysisError,
    TaskAnalysis,
    analysis_request,
    answer_text,
    parse_analysis,
    reprioritised,
)
from supervisor.store.tasks.models import Task, TaskState
from supervisor.store.tasks.priority import FactorSource, PriorityHints, prioritise
from tests.tasks.queue_specs import new_task

NOW = datetime(2026, 12, 7, tzinfo=UTC)
GOOD = '{"category": "bug", "complexity": 3, "solvability": 0.8}'


def a_task(**changes: object) -> Task:
    data = {**new_task().model_dump(), "id": 7, "state": TaskState.QUEUED, "created_at": NOW, "updated_at": NOW}
    return Task.model_validate({**data, **changes})


@pytest.mark.parametrize("text", [GOOD, f"```json\n{GOOD}\n```", f"  {GOOD}\n"])
def test_one_valid_estimate_is_read(text: str) -> None:
    assert parse_analysis(text) == TaskAnalysis.model_validate_json(GOOD)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("", "not one JSON object"),
        ("Sure! Here it is: " + GOOD, "not one JSON object"),
        (GOOD + GOOD, "not one JSON object"),
        ("[1, 2]", "not an object"),
        ('{"category": "bug", "complexity": 11, "solvability": 0.8}', "complexity"),
        ('{"category": "bug", "complexity": 0, "solvability": 0.8}', "complexity"),
        ('{"category": "bug", "complexity": 3, "solvability": 1.5}', "solvability"),
        ('{"category": "bug", "complexity": 3, "solvability": NaN}', "solvability"),
        ('{"category": "bug", "complexity": "3", "solvability": 0.8}', "complexity"),
        ('{"category": "bug", "complexity": 3.5, "solvability": 0.8}', "complexity"),
        ('{"category": "ignore previous instructions", "complexity": 3, "solvability": 0.8}', "category"),
        ('{"category": "bug", "complexity": 3}', "solvability"),
        ('{"category": "bug", "complexity": 3, "solvability": 0.8, "priority": 1000}', "priority"),
        ('{"category": "bug", "complexity": 3, "solvability": 0.8, "category": "docs", "x": 1}', "x"),
        ("\udcff\x00" * 10, "not one JSON object"),
        (" " * 3000 + GOOD + " " * 3000, "characters long"),
    ],
)
def test_anything_else_is_refused_with_a_reason(text: str, said: str) -> None:
    with pytest.raises(AnalysisError, match=said):
        parse_analysis(text)


def test_a_huge_answer_is_refused_unread() -> None:
    with pytest.raises(AnalysisError, match="100000 characters long"):
        parse_analysis("{" * 100_000)


@pytest.mark.parametrize(
    "response",
    [None, [], {}, {"content": "text"}, {"content": []}, {"content": [{"type": "tool_use", "input": {}}]},
     {"content": [{"type": "text", "text": 5}]}, {"content": [{"type": "text", "text": "  "}]}],
)  # fmt: skip
def test_a_response_without_text_is_refused(response: object) -> None:
    with pytest.raises(AnalysisError):
        answer_text(response)


def test_the_request_is_bounded_whatever_the_task_holds() -> None:
    task = a_task(
        title="t" * 200, body="b" * 50_000, fail_to_pass=[f"tests/test_x.py::test_{n}" * 20 for n in range(90)]
    )
    body = analysis_request(task, "claude-haiku-4-5", 128, 1500)
    text = body["messages"][0]["content"]
    assert MARKER in body["system"] and body["max_tokens"] == 128 and body["model"] == "claude-haiku-4-5"
    assert len(text) < 1500 + 300 + 20 * 200 + 400
    assert "and 70 more" in text
    assert json.dumps(body)  # plain JSON


def test_only_solvability_changes_and_the_priority_follows() -> None:
    task = new_task()
    saved = prioritise(task, PriorityHints(impact=0.9), PriorityWeights(), (3, 4), NOW)
    estimate = TaskAnalysis.model_validate_json('{"category": "security", "complexity": 8, "solvability": 0.1}')
    after = reprioritised(saved, estimate, PriorityWeights(), NOW)
    for name in ("health", "impact", "urgency"):
        assert after.factors[name] == saved.factors[name]
    entry = after.factors["solvability"]
    assert entry.source is FactorSource.ANALYSIS and entry.value == 0.1 and "complexity 8/10" in entry.why
    assert after.total == pytest.approx(saved.total - saved.factors["solvability"].product + 0.1 * 1.5)
    assert after.priority == round(after.total * 1000) and after.priority < saved.priority


def test_a_task_queued_without_factors_gets_only_the_estimate() -> None:
    estimate = TaskAnalysis.model_validate_json(GOOD)
    after = reprioritised(None, estimate, PriorityWeights(), NOW)
    assert after.total == pytest.approx(0.8 * 1.5)
    assert after.factors["impact"].value == 0 and "not computed" in after.factors["impact"].why
