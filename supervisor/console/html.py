"""The HTML pieces every console page is made of: the page frame, tables, times, links, numbers.

Every value that came from the agent goes through `safe()`; numbers and our own labels are
formatted here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from supervisor.console.text import safe


def page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width">'
        f'<title>{safe(title)}</title><link rel="stylesheet" href="/static/console.css"></head><body>'
        '<header><a href="/">Ouroboros console</a> · <a href="/log">decision log</a> · '
        '<a href="/journal">journal</a> · <a href="/metrics">metrics</a> '
        '<span class="ro">read-only</span></header>'
        f"<main><h1>{safe(title)}</h1>{body}</main></body></html>"
    )


def table(headers: Iterable[str], rows: Iterable[Iterable[str]], css: str = "") -> str:
    """`rows` hold HTML already made safe by the caller."""
    head = "".join(f"<th>{safe(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def when(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    return (f"{days}d " if days else "") + f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"


def gen_link(number: int | None) -> str:
    return "" if number is None else f'<a href="/g/{number}">gen {number}</a>'


def cand_link(candidate_id: str | None) -> str:
    return "" if not candidate_id else f'<a href="/c/{safe(candidate_id)}">{safe(candidate_id)}</a>'


def percent(rate: float | None) -> str:
    return "" if rate is None else f"{rate:.0%}"


def whole(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}"
