"""Server-side SVG charts and the lineage graph: no JavaScript, no outside assets, text escaped."""

from __future__ import annotations

from dataclasses import dataclass

from supervisor.console.text import safe

WIDTH, HEIGHT, PAD = 640, 140, 36
MAX_BAR = 48
SIDE_X = 330  # where a generation's other candidates start, right of its label


@dataclass
class Bar:
    label: str
    value: float
    href: str = ""


def bar_chart(title: str, bars: list[Bar], unit: str, css: str) -> str:
    """A bar chart; every bar carries a <title> with its exact value, and the table beside it the data."""
    if not bars:
        return f'<p class="empty">{safe(title)}: no data yet</p>'
    top = max(max(bar.value for bar in bars), 1e-9)
    step = min((WIDTH - PAD) / len(bars), MAX_BAR)
    parts = [
        f'<svg class="chart {css}" role="img" viewBox="0 0 {WIDTH} {HEIGHT + 20}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{safe(title)}</title>',
        f'<text x="0" y="12" class="axis">{safe(_number(top))} {safe(unit)}</text>',
        f'<line x1="{PAD}" y1="{HEIGHT}" x2="{WIDTH}" y2="{HEIGHT}" class="axis"/>',
    ]
    for index, bar in enumerate(bars):
        height = max(0.0, bar.value / top * (HEIGHT - 20))
        x = PAD + index * step
        rect = (
            f'<rect class="bar" x="{x + 1:.1f}" y="{HEIGHT - height:.1f}" width="{max(step - 2, 1):.1f}" '
            f'height="{height:.1f}"><title>{safe(bar.label)}: {safe(_number(bar.value))} {safe(unit)}</title></rect>'
        )
        parts.append(f'<a href="{safe(bar.href)}">{rect}</a>' if bar.href else rect)
    parts.append(f'<text x="{PAD}" y="{HEIGHT + 15}" class="axis">{safe(bars[0].label)}</text>')
    if len(bars) > 1:
        last_x = PAD + len(bars) * step
        parts.append(f'<text x="{last_x:.0f}" y="{HEIGHT + 15}" class="axis end">{safe(bars[-1].label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _number(value: float) -> str:
    return f"{value:.4g}" if value < 1000 else f"{value:,.0f}"


@dataclass
class Node:
    key: str
    label: str
    title: str
    href: str
    kind: str  # generation, current, rolled-back, rejected, waiting


def lineage_graph(chain: list[tuple[Node, list[Node]]]) -> str:
    """Generations top (newest) to bottom, each with its judged-but-not-accepted candidates to its right."""
    row, radius = 34, 9
    height = max(row * len(chain) + 10, 40)
    parts = [
        f'<svg class="lineage" role="img" viewBox="0 0 {WIDTH} {height}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>lineage: generations and their rejected candidates</title>"
    ]
    for index, (generation, others) in enumerate(chain):
        y = 20 + index * row
        if index + 1 < len(chain):
            parts.append(f'<line class="edge" x1="30" y1="{y}" x2="30" y2="{y + row}"/>')
        parts.append(_node(generation, 30, y, radius, 50))
        for position, other in enumerate(others[:6]):
            x = SIDE_X + position * 50
            parts.append(f'<line class="edge side" x1="30" y1="{y}" x2="{x}" y2="{y}"/>')
            parts.append(_node(other, x, y, radius - 2, None))
    parts.append("</svg>")
    return "".join(parts)


def _node(node: Node, x: int, y: int, radius: int, text_x: int | None) -> str:
    label = (
        f'<text class="label" x="{text_x}" y="{y + 4}">{safe(_short(node.label, 36))}</text>'
        if text_x
        else f'<text class="label small" x="{x + radius + 3}" y="{y + 4}">{safe(node.key, 12)}</text>'
    )
    return (
        f'<a href="{safe(node.href)}" class="node {safe(node.kind)}"><title>{safe(node.title, 400)}</title>'
        f'<circle cx="{x}" cy="{y}" r="{radius}"/>{label}</a>'
    )


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
