"""The agent's /history/SUMMARY.md carries the task figures of each generation beside its own goals."""

from __future__ import annotations

from supervisor.loop import lineage_view
from supervisor.store.scorecard.models import GenerationCard


class Cards:
    """The two reads summary() makes of the scorecard store (a fake: the page is pure formatting)."""

    def __init__(self, cards: list[GenerationCard]) -> None:
        self._cards = cards

    def cards(self, limit: int | None = None) -> list[GenerationCard]:
        return self._cards[:limit]

    def candidates(self, limit: int = 200, state: str | None = None) -> list[object]:
        return []


def test_the_trend_shows_tasks_passed_failed_infrastructure_regressions_and_tokens_per_passed_task() -> None:
    cards = [
        GenerationCard(generation=2, commit="b" * 40, tasks_attempted=4, tasks_passed=3, tasks_failed=1,
                       tasks_infrastructure=2, task_regressions=1, task_tokens=90_000),
        GenerationCard(generation=1, commit="a" * 40),
    ]  # fmt: skip
    page = lineage_view.summary(Cards(cards))  # type: ignore[arg-type]
    header = next(line for line in page.splitlines() if line.startswith("| gen |"))
    assert "tasks passed/failed/infrastructure | regressions | tokens/passed task" in header
    rows = [line for line in page.splitlines() if line.startswith("| 2 |") or line.startswith("| 1 |")]
    assert rows[0].endswith("| 3/1/2 | 1 | 30,000 |")
    assert rows[1].endswith("| 0/0/0 | 0 | - |")
    assert all(row.count("|") == header.count("|") for row in rows)
