"""The console, /metrics and the scorecard over a real demo run (real Docker, git, SDK, gate)."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import httpx2 as httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from supervisor.route.ledger import LEDGER_FILE_NAME, read_entries
from supervisor.store.decision_log import DecisionLog
from supervisor.store.scorecard import ScorecardStore

from .conftest import HOSTILE

pytestmark = pytest.mark.docker
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("OUROBOROS_TEST_ARTIFACTS", ".cache/test-output"))  # screenshots


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_scorecard_of_the_demo_equals_the_records(demo):
    store = ScorecardStore(demo.state, demo.goals)
    store.update()
    records = list(DecisionLog(demo.state / "decisions.jsonl").records())
    entries, _ = read_entries(demo.state / LEDGER_FILE_NAME)
    cards = {card.generation: card for card in store.cards()}
    accepted = [r for r in records if r.kind == "accepted"]
    rejected = [r for r in records if r.kind == "rejected"]
    assert sorted(cards) == [0, 1]
    assert cards[1].commit == accepted[0].commit and cards[1].candidate == accepted[0].candidate
    assert cards[1].parent == cards[0].commit and cards[1].parent_generation == 0
    assert cards[1].why == demo_git_subject(demo, accepted[0].commit)
    assert cards[1].gate_s == pytest.approx(sum(p["duration_s"] for p in accepted[0].details["passes"]), abs=0.01)
    # Generation 0 proposed the accepted change; generation 1 the two rejected ones.
    assert (cards[0].made, cards[0].accepted, cards[0].rejected) == (1, 1, 0)
    assert (cards[1].made, cards[1].accepted, cards[1].rejected) == (len(rejected), 0, len(rejected))
    # Every metered token is attributed to exactly one generation, the sum equals the ledger.
    assert sum(c.tokens for c in cards.values()) == sum(e.usage.total_tokens for e in entries) > 0
    assert sum(c.usd for c in cards.values()) == sum((e.cost_usd for e in entries), Decimal(0))
    assert sum(c.cycles for c in cards.values()) == len({e.cycle for e in entries if e.cycle != "-"})
    # Each generation's cost is the ledger's entries written while it was main.
    switch = accepted[0].at
    before = sum(e.usage.total_tokens for e in entries if e.ts.isoformat() < switch)
    assert cards[0].tokens == before
    # The demo's generations work on tasks, not on goals of their own: a task is no goal (goals stay
    # what the agent's completed.md says; task figures are the supervisor's verdicts, below).
    assert cards[0].goals == 0 and cards[0].tokens_per_goal is None
    # Agent starts come from the runner's own records (one per launch), crashes likewise (none here).
    starts = [r for r in records if r.kind == "agent-started"]
    assert cards[0].starts == sum(r.generation == 0 for r in starts) >= 1
    assert cards[1].starts == sum(r.generation == 1 for r in starts) >= 1
    assert sum(c.crashes for c in cards.values()) == sum(r.kind == "agent-crashed" for r in records)
    # Tasks: generation 0 fixed the first task, generation 1 got the second wrong (with a regression).
    judged = [r for r in records if r.kind == "task-judged" and r.details["applied"] is True]
    assert [(r.generation, r.details["outcome"]) for r in judged] == [(0, "passed"), (1, "failed")]
    assert (cards[0].tasks_attempted, cards[0].tasks_passed, cards[0].tasks_failed) == (1, 1, 0)
    assert (cards[1].tasks_attempted, cards[1].tasks_passed, cards[1].tasks_failed) == (1, 0, 1)
    assert cards[1].task_regressions == judged[1].details["regressions"] >= 1
    assert cards[0].tokens_per_passed_task == judged[0].details["tokens"] > 0
    assert cards[1].task_pass_rate == 0 and cards[1].tokens_per_passed_task is None


def demo_git_subject(demo, commit: str) -> str:
    from supervisor.base.git_ops import Git

    return Git(demo.repo).message(commit).splitlines()[0]


def test_metrics_equal_the_ledger_and_the_decision_log(demo, console):
    text = httpx.get(console.url + "metrics").text
    samples = _samples(text)
    entries, _ = read_entries(demo.state / LEDGER_FILE_NAME)
    records = list(DecisionLog(demo.state / "decisions.jsonl").records())
    for kind in ("input_tokens", "output_tokens"):
        metered = sum(samples[k] for k in samples if k[0] == "ouroboros_llm_tokens_total" and ("kind", kind) in k[1])
        assert metered == sum(getattr(e.usage, kind) for e in entries) > 0
    usd = sum(samples[k] for k in samples if k[0] == "ouroboros_llm_usd_total")
    assert usd == pytest.approx(float(sum(e.cost_usd for e in entries)))
    assert samples[("ouroboros_route_requests_total", (("status", "200"),))] == len(entries)
    for verdict in ("accepted", "rejected"):
        assert samples[("ouroboros_proposals_total", (("verdict", verdict),))] == sum(
            1 for r in records if r.kind == verdict
        )
    judged = sum(1 for r in records if r.kind in ("accepted", "rejected") and r.details.get("passes"))
    assert samples[("ouroboros_gate_duration_seconds_count", ())] == judged
    assert samples[("ouroboros_generation", ())] == 1
    assert samples[("ouroboros_rollbacks_total", ())] == sum(1 for r in records if r.kind == "rollback")
    assert samples[("ouroboros_decision_chain_ok", ())] == 1
    for outcome in ("passed", "failed"):
        assert samples[("ouroboros_tasks_total", (("outcome", outcome),))] == sum(
            1 for r in records if r.kind == "task-judged" and r.details["outcome"] == outcome
        )


def test_the_console_in_a_real_browser(demo, console):
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing (apt-get install chromium; scripts/bootstrap.sh does it as root)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    rejected = sorted(DecisionLog(demo.state / "decisions.jsonl").records(), key=lambda r: r.seq)
    breaking = next(r for r in rejected if r.kind == "rejected" and r.details.get("failures"))
    hostile = next(r for r in rejected if r.kind == "rejected" and r.details.get("summary") == HOSTILE)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 2400})
            errors: list[str] = []
            page.on("console", lambda message: errors.append(message.text))
            outside: list[str] = []
            page.on(
                "request", lambda request: None if request.url.startswith(console.url) else outside.append(request.url)
            )
            page.goto(console.url)
            # The lineage graph: both generations and the rejected candidates, as links.
            graph = page.locator("svg.lineage")
            assert graph.locator('a[href="/g/0"]').count() == 1 and graph.locator('a[href="/g/1"]').count() == 1
            assert graph.locator(f'a[href="/c/{breaking.candidate}"]').count() == 1
            # The spend chart is drawn: bars with a real height.
            bars = page.locator("#spend-per-day svg rect.bar")
            assert bars.count() >= 1 and float(bars.first.get_attribute("height")) > 0
            # The task trend: both generations were judged on a task (0 passed it, 1 failed its).
            rates = page.locator("#task-pass-rate svg rect.bar")
            assert rates.count() == 2 and float(rates.first.get_attribute("height") or 0) > 0
            assert "100 %" in (rates.first.locator("title").text_content() or "")
            assert page.locator("#tokens-per-passed-task svg rect.bar").count() == 1
            page.screenshot(path=str(ARTIFACTS / "console-main.png"), full_page=True)
            # The hostile summary is text: no script ran, no element was made, escapes are visible.
            assert page.title().startswith("Ouroboros") and "pwned" not in page.title()
            assert page.locator("main script, main b").count() == 0
            assert "<script>document.title='pwned'</script>" in page.locator("#lineage").inner_text()
            assert "\x1b" not in page.content() and "\u241b[2J" in page.locator("#lineage").inner_text()
            # Opening the rejected candidate shows its failing tests.
            graph.locator(f'a[href="/c/{breaking.candidate}"]').click()
            page.wait_for_url(f"**/c/{breaking.candidate}")
            failing = page.locator("table.failures").inner_text()
            for failure in breaking.details["failures"]:
                assert failure["test_id"] in failing
            page.screenshot(path=str(ARTIFACTS / "console-rejected.png"), full_page=True)
            page.goto(console.url + f"c/{hostile.candidate}")
            assert page.locator("main script, main b").count() == 0 and "pwned" not in page.title()
            assert HOSTILE.split("\x1b")[0] in page.locator("main").inner_text()
            assert outside == [], outside  # nothing loaded from anywhere else
            assert errors == [], errors  # no CSP violation, no failed resource
        finally:
            browser.close()
