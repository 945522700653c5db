"""Task figures on the scorecard: folded from `task-judged` records a real DecisionLog wrote, applied
ones only, infrastructure apart; shown by `supervisor scorecard`, /metrics and the console (in a real
browser too), never taken from anything the agent writes."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path

import httpx2 as httpx
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from supervisor.cli import main as cli
from supervisor.console.server import ConsoleServer
from supervisor.console.view import InstanceView
from supervisor.store.decision_kinds import DecisionKind
from supervisor.store.decision_log import DecisionLog
from supervisor.store.instance import Instance
from supervisor.store.scorecard import ScorecardStore
from supervisor.store.scorecard.tables import ADDED_COLUMNS

from .helpers import sha, synthetic_instance, write_history

CHROMIUM = "/usr/bin/chromium"


def judged(
    log: DecisionLog,
    generation: int | None,
    outcome: str,
    *,
    task: int = 1,
    tokens: object = 0,
    regressions: object = 0,
    applied: object = True,
) -> None:
    """A `task-judged` record as supervisor/loop/task_verdicts.py writes it."""
    log.append(
        DecisionKind.TASK_JUDGED,
        generation=generation,
        commit=sha(task, "f"),
        details={
            "task": task,
            "attempt": 1,
            "project": "sample",
            "outcome": outcome,
            "reason": "r",
            "tokens": tokens,
            "result": sha(task, "f"),
            "regressions": regressions,
            "needs_review": False,
            "applied": applied,
        },
    )


def _state(tmp_path: Path) -> Path:
    state = tmp_path / "repo.git" / "ouroboros"
    state.mkdir(parents=True)
    return state


def _verdicts(log: DecisionLog) -> None:
    """Generation 0: 1 passed, 1 failed (2 regressions), 1 gave up, 1 infrastructure, 1 not applied.
    Generation 1: 2 passed, 1 failed; one of its verdicts names no generation (main's is taken)."""
    judged(log, 0, "passed", task=1, tokens=1000)
    judged(log, 0, "failed", task=2, tokens=500, regressions=2)
    judged(log, 0, "gave-up", task=3, tokens=300, regressions=4)  # only a failed verdict's regressions count
    judged(log, 0, "infrastructure", task=4, tokens=70, regressions=1)
    judged(log, 0, "passed", task=5, tokens=9999, applied=False)  # a verdict the queue refused (fenced out)


def test_task_figures_equal_the_applied_verdicts(tmp_path: Path) -> None:
    state = _state(tmp_path)
    write_history(state, 1)  # genesis (gen 0), then gen 1 accepted: main is gen 1 afterwards
    log = DecisionLog(state / "decisions.jsonl")
    _verdicts(log)
    judged(log, 1, "passed", task=6, tokens=200)
    judged(log, None, "passed", task=7, tokens=400)
    judged(log, 1, "failed", task=8, tokens=600, regressions=1)
    store = ScorecardStore(state)
    store.update()
    zero, one = store.card(0), store.card(1)
    assert zero is not None and one is not None
    assert (zero.tasks_attempted, zero.tasks_passed, zero.tasks_failed, zero.tasks_infrastructure) == (3, 1, 2, 1)
    assert zero.task_regressions == 2 and zero.task_tokens == 1800
    assert zero.task_pass_rate == pytest.approx(1 / 3) and zero.tokens_per_passed_task == 1800
    assert (one.tasks_attempted, one.tasks_passed, one.tasks_failed, one.task_regressions) == (3, 2, 1, 1)
    assert one.tokens_per_passed_task == 600 and one.task_pass_rate == pytest.approx(2 / 3)
    # The same figures, recounted from the records themselves.
    records = [r for r in log.records() if r.kind == DecisionKind.TASK_JUDGED and r.details["applied"] is True]
    attempts = [r for r in records if r.details["outcome"] != "infrastructure"]
    assert zero.tasks_attempted + one.tasks_attempted == len(attempts)
    assert zero.task_tokens + one.task_tokens == sum(r.details["tokens"] for r in attempts)
    counters = store.snapshot()["counters"]
    assert (counters["tasks|passed"], counters["tasks|failed"], counters["tasks|infrastructure"]) == (3, 2, 1)
    data = zero.model_dump() | zero.derived()
    assert data["tasks_passed"] == 1 and data["tokens_per_passed_task"] == 1800


def test_no_task_no_rate(tmp_path: Path) -> None:
    state = _state(tmp_path)
    write_history(state, 0)
    log = DecisionLog(state / "decisions.jsonl")
    judged(log, 0, "infrastructure", tokens=10)
    judged(log, 0, "failed", tokens=10)
    store = ScorecardStore(state)
    store.update()
    card = store.card(0)
    assert card is not None and card.tasks_infrastructure == 1 and card.tasks_attempted == 1
    assert card.task_pass_rate == 0 and card.tokens_per_passed_task is None  # nothing passed: no cost per pass
    assert ScorecardStore(state).card(0) == card


def test_incremental_and_counted_once_across_reopens(tmp_path: Path) -> None:
    state = _state(tmp_path)
    write_history(state, 0)
    log = DecisionLog(state / "decisions.jsonl")
    judged(log, 0, "passed", tokens=100)
    store = ScorecardStore(state)
    store.update()
    assert store.update() == 0
    judged(log, 0, "failed", tokens=50, regressions=3)
    store.close()
    again = ScorecardStore(state)
    assert again.update() == 1
    card = again.card(0)
    assert card is not None and (card.tasks_passed, card.tasks_failed, card.task_regressions) == (1, 1, 3)
    assert card.task_tokens == 150


def test_malformed_details_count_nothing_they_do_not_say(tmp_path: Path) -> None:
    """The records are the supervisor's own, but a field of the wrong type must not crash the store
    nor count something it does not say."""
    state = _state(tmp_path)
    write_history(state, 0)
    log = DecisionLog(state / "decisions.jsonl")
    judged(log, 0, "passed", tokens="1000", applied="true")  # applied must be true, not "true"
    judged(log, 0, "won", tokens=5)  # no such outcome
    judged(log, 0, "failed", tokens=-5, regressions=True)
    judged(log, 0, "failed", tokens=2.5, regressions="many")
    judged(log, 0, "passed", tokens=None, regressions=[1])
    log.append(DecisionKind.TASK_JUDGED, generation=0, details={"outcome": "passed"})  # no `applied`
    log.append(DecisionKind.TASK_JUDGED, generation=0, details={"outcome": "passed", "applied": True})
    store = ScorecardStore(state)
    store.update()
    card = store.card(0)
    assert card is not None
    assert (card.tasks_attempted, card.tasks_passed, card.tasks_failed, card.task_regressions) == (4, 2, 2, 0)
    assert card.task_tokens == 0


def test_an_older_store_gains_the_columns_and_recounts(tmp_path: Path) -> None:
    state = _state(tmp_path)
    write_history(state, 1)
    log = DecisionLog(state / "decisions.jsonl")
    judged(log, 1, "passed", tokens=100)
    store = ScorecardStore(state)
    store.update()
    with store.session() as db:  # what the release before task figures left: no columns, no task rule
        for column in ADDED_COLUMNS:
            db.execute(f"ALTER TABLE generations DROP COLUMN {column}")
        db.execute("DELETE FROM meta WHERE key='task_rule'")
    store.close()
    db = sqlite3.connect(state / "scorecard.sqlite")
    assert "tasks_passed" not in {row[1] for row in db.execute("PRAGMA table_info(generations)")}
    db.close()
    again = ScorecardStore(state)
    again.update()
    card = again.card(1)
    assert card is not None and card.tasks_passed == 1 and card.task_tokens == 100
    meta = again.snapshot()["meta"]
    assert "task verdicts" in meta["reset_note"] and meta["task_rule"] == "task-judged"
    assert again.update() == 0 and ScorecardStore(state).card(1) == card  # recounted once, not at every open


def test_the_agent_cannot_add_task_figures(tmp_path: Path) -> None:
    """Files the agent writes (its goals, a fake decision log in its memory) count for nothing."""
    state = _state(tmp_path)
    goals = tmp_path / "goals"
    goals.mkdir()
    write_history(state, 0)
    (goals / "completed.md").write_text("**Completed:** 2000-01-01T00:00:00Z\ntask-judged passed applied true\n")
    DecisionLog(goals / "decisions.jsonl").append(
        DecisionKind.TASK_JUDGED, generation=0, details={"outcome": "passed", "applied": True, "tokens": 1}
    )
    store = ScorecardStore(state, goals)
    store.update()
    card = store.card(0)
    assert card is not None and (card.tasks_attempted, card.tasks_passed) == (0, 0)


# -- where the figures are shown ----------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    synthetic_instance(home, 2)
    log = DecisionLog(home / "repo.git" / "ouroboros" / "decisions.jsonl")
    judged(log, 1, "passed", task=1, tokens=1200)
    judged(log, 1, "failed", task=2, tokens=800, regressions=2)
    judged(log, 2, "passed", task=3, tokens=500)
    judged(log, 2, "passed", task=4, tokens=700)
    judged(log, 2, "infrastructure", task=5, tokens=0)
    return home


def test_the_scorecard_command_shows_them(home: Path) -> None:
    result = CliRunner().invoke(cli, ["scorecard", "--home", str(home)])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.output.splitlines() if line.split()[0].isdigit()}
    assert "1/1/0" in rows["1"] and "50%" in rows["1"] and "2,000" in rows["1"]
    assert "2/0/1" in rows["2"] and "100%" in rows["2"] and "600" in rows["2"]
    assert "tasks p/f/i" in result.output.splitlines()[0]
    data = json.loads(CliRunner().invoke(cli, ["scorecard", "--json", "--home", str(home)]).output)
    cards = {card["generation"]: card for card in data}
    assert cards[1]["tasks_attempted"] == 2 and cards[1]["task_regressions"] == 2
    assert cards[1]["task_pass_rate"] == 0.5 and cards[1]["tokens_per_passed_task"] == 2000
    assert cards[2]["tasks_infrastructure"] == 1 and cards[0]["task_pass_rate"] is None


def test_metrics_count_the_verdicts(home: Path) -> None:
    from supervisor.console import metrics

    view = InstanceView(Instance(home))
    view.refresh()
    text, _ = metrics.render(view)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }
    assert samples[("ouroboros_tasks_total", (("outcome", "passed"),))] == 3
    assert samples[("ouroboros_tasks_total", (("outcome", "failed"),))] == 1
    assert samples[("ouroboros_tasks_total", (("outcome", "infrastructure"),))] == 1
    assert samples[("ouroboros_task_tokens_total", ())] == 3200
    assert samples[("ouroboros_task_regressions_total", ())] == 2


@pytest.fixture
def console(home: Path):
    server = ConsoleServer(InstanceView(Instance(home)), "127.0.0.1", 0, None)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_pages_show_the_trend_and_the_cards(console: ConsoleServer) -> None:
    main = httpx.get(console.url).text
    assert 'id="tasks-trend"' in main and 'id="task-pass-rate"' in main
    assert "tokens per passed task" in main
    generation = httpx.get(console.url + "g/1").text
    assert "tasks_passed" in generation and "tokens_per_passed_task" in generation and "2000.0" in generation
    cards = {c["generation"]: c for c in httpx.get(console.url + "scorecard.json").json()}
    assert cards[2]["tasks_passed"] == 2 and cards[2]["tokens_per_passed_task"] == 600


def test_the_trend_in_a_real_browser(console: ConsoleServer) -> None:
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing (apt-get install chromium; scripts/bootstrap.sh does it as root)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 2400})
            errors: list[str] = []
            page.on("console", lambda message: errors.append(message.text))
            page.goto(console.url)
            rates = page.locator("#task-pass-rate svg rect.bar")
            assert rates.count() == 2  # generations 1 and 2 were judged on tasks; 0 was not
            heights = [float(rates.nth(i).get_attribute("height") or 0) for i in range(2)]
            assert heights[1] == pytest.approx(2 * heights[0], abs=0.2)  # 100 % is twice 50 %
            assert "gen 2: 100 %" in rates.nth(1).locator("title").text_content() or ""
            costs = page.locator("#tokens-per-passed-task svg rect.bar")
            assert costs.count() == 2 and "gen 1: 2,000 tokens" in costs.nth(0).locator("title").text_content() or ""
            trend = page.locator("#tasks-trend table.trend").inner_text()
            assert "50%" in trend and "100%" in trend
            page.locator('#tasks-trend a[href="/g/1"]').first.click()
            page.wait_for_url("**/g/1")
            assert "tokens_per_passed_task" in page.locator("main").inner_text()
            assert errors == [], errors
        finally:
            browser.close()
