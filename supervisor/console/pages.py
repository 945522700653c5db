"""The console's pages, rendered on the server as plain HTML tables and inline SVG (no JavaScript).

Every value that came from the agent goes through `safe()`; numbers and our own labels are
formatted here. Each page reads a bounded amount whatever the history's length (see view.py).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from supervisor.console import agent_files
from supervisor.console.html import cand_link, duration, gen_link, page, percent, table, when, whole
from supervisor.console.svg import Bar, Node, bar_chart, lineage_graph
from supervisor.console.task_pages import bench_section, task_trend_section
from supervisor.console.text import safe
from supervisor.console.view import InstanceView
from supervisor.store.scorecard import CandidateRow, GenerationCard

LINEAGE_ROWS = 20  # the newest; older ones are a link away (/generations)
LOG_ROWS = 20


# -- the main page ---------------------------------------------------------------------------------


def main_page(view: InstanceView) -> str:
    snapshot = view.store.snapshot()
    cards = view.store.cards(limit=LINEAGE_ROWS)
    oldest = cards[-1].generation if cards else 0
    others = view.store.not_accepted_since(oldest)
    warning = f'<p class="warning">{safe(view.stale)}</p>' if view.stale else ""
    fleet = '<p id="fleet-link"><a href="/fleet">the fleet</a>: nodes, queue, verdicts</p>'
    body = (
        warning
        + (fleet if view.config().fleet.enabled else "")
        + status_section(view, snapshot)
        + lineage_section(cards, others)
        + charts_section(cards, snapshot)
        + task_trend_section(cards)
        + bench_section(view)
        + waiting_section(view)
        + log_section(view, snapshot)
        + journal_section(view, 3000)
    )
    return page("Ouroboros: " + str(view.instance.home), body)


def status_section(view: InstanceView, snapshot: dict[str, Any]) -> str:
    status = view.status()
    seen = view.shown(status)
    rows = [
        ("state", safe(seen.state)),
        ("generation", gen_link(status.generation) if status else ""),
        ("commit", safe((status.commit or "")[:12]) if status else ""),
        ("probation", safe(seen.probation if status else "")),
        ("uptime", duration(view.uptime_s(status))),
        ("restarts this run", str(status.restarts) if status else ""),
        ("message", safe(status.message, 300) if status else ""),
        (
            "spend in total",
            f"${snapshot['total']['usd']} · {snapshot['total']['tokens']:,} tokens · "
            f"{snapshot['total']['requests']:,} requests",
        ),
    ]
    caps = [
        (
            f"{c.scope} {safe(c.key)}",
            f"{safe(c.spent)} of {safe(c.cap)} {c.unit}",
            f'<meter min="0" max="1" value="{min(c.fraction, 1):.3f}"></meter> {c.fraction:.0%}',
        )
        for c in view.caps(snapshot)
    ]
    return (
        '<section id="status"><h2>Status</h2>'
        + table(("", ""), rows, "kv")
        + "<h3>Spend against caps</h3>"
        + table(("cap", "spent", "used"), caps)
        + "</section>"
    )


def lineage_section(cards: list[GenerationCard], others: list[CandidateRow]) -> str:
    by_gen: dict[int, list[CandidateRow]] = {}
    for row in others:
        by_gen.setdefault(row.gen, []).append(row)
    chain = [(_generation_node(card), [_candidate_node(r) for r in by_gen.get(card.generation, [])]) for card in cards]
    rows = [_card_row(card) for card in cards]
    more = (
        f'<p><a href="/generations?before={cards[-1].generation}">older generations</a></p>'
        if cards and cards[-1].generation > 0
        else ""
    )
    judged = table(
        ("candidate", "from", "state", "why", "failing tests"),
        [
            (
                cand_link(r.id),
                gen_link(r.gen),
                safe(r.state),
                safe(r.summary, 200),
                safe(", ".join(f.get("test_id", "") for f in r.failures[:5]), 400),
            )
            for r in others[:40]
        ],
    )
    return (
        '<section id="lineage"><h2>Lineage</h2>'
        + lineage_graph(chain)
        + "<h3>Generations (scorecard)</h3>"
        + table(CARD_HEADERS, rows, "cards")
        + more
        + "<h3>Candidates not accepted</h3>"
        + judged
        + "</section>"
    )


def _generation_node(card: GenerationCard) -> Node:
    kind = "rolled-back" if card.rolled_back else "generation"
    label = f"gen {card.generation}" + (" (rolled back)" if card.rolled_back else "") + f": {card.why}"
    return Node(str(card.generation), label, f"generation {card.generation}: {card.why}", f"/g/{card.generation}", kind)


def _candidate_node(row: CandidateRow) -> Node:
    kind = "rejected" if row.state == "rejected" else "waiting"
    return Node(row.id, row.id, f"candidate {row.id} {row.state}: {row.summary}", f"/c/{row.id}", kind)


CARD_HEADERS = (
    "gen",
    "commit",
    "parent",
    "accepted",
    "why",
    "gate s",
    "alive",
    "cycles",
    "goals*",
    "tokens",
    "USD",
    "tokens/goal",
    "made/acc/rej/wait",
    "crashes",
    "restarts",
    "rolled back",
    "tasks pass/fail/infra",
    "task pass rate",
    "regressions",
    "tokens/passed task",
)


def _card_row(card: GenerationCard) -> list[str]:
    per_goal = f"{card.tokens_per_goal:,.0f}" if card.tokens_per_goal is not None else ""
    return [
        gen_link(card.generation),
        safe(card.commit[:12]),
        gen_link(card.parent_generation),
        when(card.accepted_at),
        safe(card.why, 200),
        f"{card.gate_s:.1f}" if card.gate_s is not None else "",
        duration(card.alive_s),
        str(card.cycles),
        str(card.goals),
        f"{card.tokens:,}",
        f"{card.usd:.4f}",
        per_goal,
        f"{card.made}/{card.accepted}/{card.rejected}/{card.waiting}",
        str(card.crashes),
        str(card.restarts),
        "yes" if card.rolled_back else "",
        f"{card.tasks_passed}/{card.tasks_failed}/{card.tasks_infrastructure}",
        percent(card.task_pass_rate),
        str(card.task_regressions),
        whole(card.tokens_per_passed_task),
    ]


def charts_section(cards: list[GenerationCard], snapshot: dict[str, Any]) -> str:
    days = snapshot["days"][-30:]
    oldest_first = list(reversed(cards))
    spend_day = [Bar(d["day"], float(Decimal(d["usd"]))) for d in days]
    spend_gen = [Bar(f"gen {c.generation}", float(c.usd), f"/g/{c.generation}") for c in oldest_first]
    per_goal = [Bar(f"gen {c.generation}", c.tokens_per_goal or 0.0, f"/g/{c.generation}") for c in oldest_first]
    pass_rate = [Bar(d["day"], d["passes"] / d["gates"] * 100) for d in days if d["gates"]]
    return (
        '<section id="charts"><h2>Charts</h2>'
        '<figure id="spend-per-day"><figcaption>Spend per day (USD)</figcaption>'
        + bar_chart("spend per day", spend_day, "USD", "spend")
        + "</figure>"
        '<figure id="spend-per-generation"><figcaption>Spend per generation (USD)</figcaption>'
        + bar_chart("spend per generation", spend_gen, "USD", "spend")
        + "</figure>"
        '<figure id="tokens-per-goal"><figcaption>Tokens per completed goal, per generation</figcaption>'
        + bar_chart("tokens per completed goal", per_goal, "tokens", "tokens")
        + "</figure>"
        '<figure id="pass-rate"><figcaption>Gate pass rate per day (%)</figcaption>'
        + bar_chart("gate pass rate", pass_rate, "%", "rate")
        + "</figure>"
        + table(
            ("day", "USD", "tokens", "requests", "gated", "passed"),
            [
                (d["day"], safe(d["usd"]), f"{d['tokens']:,}", str(d["requests"]), str(d["gates"]), str(d["passes"]))
                for d in days
            ],
        )
        + "</section>"
    )


def waiting_section(view: InstanceView) -> str:
    waiting = view.store.candidates(limit=50, state="needs-approval") + view.store.candidates(
        limit=50, state="approved"
    )
    repo = str(view.instance.repo)
    rows = [
        (
            cand_link(r.id),
            gen_link(r.gen),
            safe(r.summary, 200),
            safe("; ".join(r.reasons), 400),
            f"<code>supervisor approve {safe(r.id)} --repo {safe(repo)}</code><br>"
            f"<code>supervisor reject {safe(r.id)} --repo {safe(repo)}</code>",
        )
        for r in waiting
    ]
    return (
        '<section id="waiting"><h2>Waiting for approval</h2>'
        + (
            table(("candidate", "from", "summary", "why it waits", "commands"), rows)
            if rows
            else "<p>nothing waits</p>"
        )
        + "</section>"
    )


def log_section(view: InstanceView, snapshot: dict[str, Any], count: int = LOG_ROWS) -> str:
    meta = snapshot["meta"]
    chain = (
        "verified as each record arrived: every hash and link holds"
        if meta.get("chain_ok", "1") == "1"
        else "BROKEN: " + meta.get("chain_problem", "")
    )
    return (
        f'<section id="log"><h2>Decision log</h2><p class="chain">hash chain: {safe(chain)} '
        f'({safe(meta.get("log_seq", "0"))} records; <a href="/log">full verification</a>)</p>'
        + decisions_table(view, count)
        + "</section>"
    )


def decisions_table(view: InstanceView, count: int) -> str:
    rows = [
        (
            str(d.seq),
            safe(d.at[:19]),
            safe(d.kind),
            cand_link(d.candidate) if d.candidate else "",
            gen_link(d.generation),
            safe((d.commit or "")[:12]),
            safe("; ".join(d.reasons), 300),
            safe(d.hash[:12]),
        )
        for d in view.log_tail(count)
    ]
    return table(("seq", "at (UTC)", "kind", "candidate", "generation", "commit", "reasons", "hash"), rows)


def journal_section(view: InstanceView, limit: int) -> str:
    found = agent_files.latest_day(view.instance.journal)
    if found is None:
        return '<section id="journal"><h2>Journal</h2><p>no journal yet</p></section>'
    day, files = found
    parts = "".join(
        f'<h3>{safe(name)}</h3><pre class="agent">{safe(text[-limit:])}</pre>' for name, text in files.items() if text
    )
    return f'<section id="journal"><h2>Journal, {safe(day)} (written by the agent)</h2>{parts}</section>'


# -- detail pages --------------------------------------------------------------------------------


def generation_page(view: InstanceView, number: int) -> str | None:
    card = view.store.card(number)
    if card is None:
        return None
    data = card.model_dump(mode="json") | card.derived()
    rows = [(safe(k), safe(v)) for k, v in data.items()]
    body = (
        "<h2>Scorecard</h2>"
        + table(("field", "value"), rows, "kv")
        + (f"<p>from candidate {cand_link(card.candidate)}</p>" if card.candidate else "")
        + f'<h2>Commit message</h2><pre class="agent">{safe(view.message(card.commit))}</pre>'
        + f'<h2>Diff against its parent</h2><pre class="agent diff">{safe(view.diff(card.commit))}</pre>'
    )
    return page(f"Generation {number}", body)


def candidate_page(view: InstanceView, candidate_id: str) -> str | None:
    row = view.store.candidate(candidate_id)
    if row is None:
        return None
    failures = table(
        ("failing test", "message"),
        [
            (safe(f.get("test_id", "")), f'<pre class="agent">{safe(f.get("message", ""), 2000)}</pre>')
            for f in row.failures
        ],
        "failures",
    )
    card = view.store.card(row.gen)
    commands = ""
    if row.state in ("needs-approval", "approved"):
        repo = safe(str(view.instance.repo))
        commands = (
            f"<h2>Decide</h2><pre>supervisor approve {safe(row.id)} --repo {repo}\n"
            f"supervisor reject {safe(row.id)} --repo {repo}</pre>"
        )
    body = (
        table(
            ("field", "value"),
            [
                ("state", safe(row.state)),
                ("from", gen_link(row.gen)),
                ("became", gen_link(row.generation)),
                ("judged", when(row.at)),
                ("commit", safe(row.commit or "")),
                ("summary", safe(row.summary)),
                ("gate s", safe(row.gate_s)),
                ("reasons", safe("; ".join(row.reasons))),
            ],
            "kv",
        )
        + commands
        + "<h2>Gate result: failing tests</h2>"
        + (failures if row.failures else "<p>none</p>")
        + (
            f"<h2>Scorecard of generation {row.gen}</h2>" + table(CARD_HEADERS, [_card_row(card)], "cards")
            if card
            else ""
        )
        + f'<h2>Diff</h2><pre class="agent diff">{safe(view.diff(row.commit))}</pre>'
    )
    return page(f"Candidate {row.id}", body)


def generations_page(view: InstanceView, before: int) -> str:
    cards = view.store.cards(limit=200, before=before)
    more = f'<p><a href="/generations?before={cards[-1].generation}">older</a></p>' if cards else ""
    return page("Generations", table(CARD_HEADERS, [_card_row(c) for c in cards], "cards") + more)


def log_page(view: InstanceView) -> str:
    result = view.log.verify()  # the full check, on demand: O(records), fine for one request
    verdict = (
        f"all {result.records} records verified: every hash and link holds"
        if result.ok
        else f"BROKEN at line {result.broken_line}: {result.problem}"
    )
    return page("Decision log", f'<p class="chain">{safe(verdict)}</p>' + decisions_table(view, 200))


def journal_page(view: InstanceView) -> str:
    return page("Journal", journal_section(view, 16_000))


def scorecard_json(view: InstanceView, limit: int | None) -> str:
    return json.dumps(
        [c.model_dump(mode="json") | c.derived() for c in view.store.cards(limit=limit)],
        indent=1,
    )


__all__ = ["duration", "page", "percent", "whole"]  # used by the commands and the server through this module
