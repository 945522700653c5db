"""A fleet task's priority: four factors in 0..1, weighted, summed, saved with how each was found.

priority = health × w_health + impact × w_impact + solvability × w_solvability + urgency × w_urgency
(weights from `[fleet.weights]`, the seed's 1.0, 2.0, 1.5, 0.5). Every factor is a float from 0
(least) to 1 (most): how healthy the project is, how much fixing the task matters, how likely the
agent is to solve it, how long it has waited. A factor given with the task (an import's field, a
`fleet add --impact` option) is taken as it is; a factor not given comes from the rule below,
each a pure function of what the task and the fleet hold (docs/fleet.md lists them):

- health: the project's recent pass rate in the fleet, smoothed: (passed + 1) / (judged + 2) over
  its last HEALTH_WINDOW judged tasks (passed, failed, gave-up, infrastructure); 0.5 with none.
- impact: the strongest keyword class found in the labels and the title or problem statement:
  security, crash, data loss, regression ... 0.9; bug, error, exception ... 0.6; typo, docs ... 0.2
  (only when nothing stronger is found); none 0.5.
- solvability: the FAIL_TO_PASS tests (none 0.4; one 1.0, 0.05 less for each more, at least 0.2)
  times the problem statement's length (under 100 characters 0.6, up to 3,000 1.0, longer
  3,000 / length, at least 0.5).
- urgency: the issue's age in days (its `created_at`): age / (age + 30); 0.5 when unknown; at
  least 0.9 with an urgent, critical or blocker label.

The queue's integer `priority` column holds round(priority × SCALE), so claims follow it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import Enum
from pathlib import PurePosixPath

from pydantic import BaseModel, ConfigDict, Field

from supervisor.store.fleet_settings import PriorityWeights
from supervisor.store.tasks.models import NewTask

SCALE = 1000
FACTORS = ("health", "impact", "solvability", "urgency")
HEALTH_WINDOW = 20
LANGUAGE_PATTERN = r"^[a-z0-9][a-z0-9+#._-]{0,39}$"
UNKNOWN_LANGUAGE = "unknown"
_TEXT_SCANNED = 20_000  # characters of the problem statement searched for keywords

IMPACT_CLASSES: tuple[tuple[float, str, tuple[str, ...]], ...] = (
    (
        0.9,
        "severe",
        (
            "security", "vulnerability", "cve", "crash", "crashes", "segfault", "data loss", "corruption",
            "corrupts", "regression", "deadlock", "memory leak",
        ),
    ),
    (0.6, "bug", ("bug", "error", "exception", "fails", "failure", "broken", "incorrect", "wrong")),
    (0.2, "minor", ("typo", "docs", "documentation", "spelling", "cosmetic", "readme")),
)  # fmt: skip
URGENT_LABELS = ("urgent", "critical", "blocker")

EXTENSIONS = {
    ".py": "python", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".tsx": "typescript", ".go": "go", ".rs": "rust", ".java": "java", ".kt": "kotlin",
    ".rb": "ruby", ".php": "php", ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp",
    ".hpp": "cpp", ".cs": "csharp", ".swift": "swift", ".scala": "scala", ".ex": "elixir", ".hs": "haskell",
}  # fmt: skip


class FactorSource(str, Enum):
    GIVEN = "given"  # came with the task (an import's field, a `fleet add` option)
    RULE = "rule"  # computed by the rule of this module named in `why`
    ANALYSIS = "analysis"  # the model's estimate, asked for with `fleet analyse` (analysis.py)


class FactorEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: float = Field(ge=0, le=1)
    weight: float = Field(ge=0)
    product: float = Field(description="value × weight")
    source: FactorSource
    why: str = Field(max_length=500, description="Where the value came from.")


class PriorityBreakdown(BaseModel):
    """What the task's priority was computed from (saved as JSONB with the task)."""

    model_config = ConfigDict(extra="forbid")

    factors: dict[str, FactorEntry]
    total: float = Field(description="The sum of the products.")
    priority: int = Field(description=f"round(total × {SCALE}): the queue's priority column.")
    computed_at: datetime


class PriorityHints(BaseModel):
    """What a task may bring for its priority: factors (each 0..1), labels, the issue's date, a language."""

    model_config = ConfigDict(extra="forbid")

    health: float | None = Field(default=None, ge=0, le=1)
    impact: float | None = Field(default=None, ge=0, le=1)
    solvability: float | None = Field(default=None, ge=0, le=1)
    urgency: float | None = Field(default=None, ge=0, le=1)
    labels: list[str] = Field(default_factory=list, max_length=50)
    created_at: datetime | None = Field(default=None, description="When the issue was opened (for urgency).")
    language: str | None = Field(default=None, pattern=LANGUAGE_PATTERN)

    def given(self, name: str) -> float | None:
        value: float | None = getattr(self, name)
        return value


def _words(text: str) -> str:
    return " " + " ".join(re.findall(r"[a-z0-9]+", text.lower())) + " "


def _found(words: str, keywords: Iterable[str]) -> list[str]:
    return [word for word in keywords if f" {word} " in words]


def health_rule(passed: int, judged: int) -> tuple[float, str]:
    """The project's smoothed pass rate over its last judged fleet tasks."""
    if judged <= 0:
        return 0.5, "no judged task of the project in the fleet yet"
    value = (min(passed, judged) + 1) / (judged + 2)
    return round(value, 3), f"{passed} of its last {judged} judged fleet task(s) passed: ({passed}+1)/({judged}+2)"


def impact_rule(labels: Iterable[str], title: str, body: str) -> tuple[float, str]:
    words = _words(" ".join(labels) + " " + title + " " + body[:_TEXT_SCANNED])
    for value, name, keywords in IMPACT_CLASSES:
        found = _found(words, keywords)
        if found:
            return value, f"{name} keyword(s) in labels or text: {', '.join(found[:5])}"
    return 0.5, "no impact keyword in labels or text"


def solvability_rule(fail_to_pass: int, body_length: int) -> tuple[float, str]:
    tests = 0.4 if fail_to_pass <= 0 else max(0.2, 1.0 - 0.05 * (fail_to_pass - 1))
    if body_length < 100:
        length = 0.6
    elif body_length <= 3000:
        length = 1.0
    else:
        length = max(0.5, 3000 / body_length)
    value = round(tests * length, 3)
    return value, f"{fail_to_pass} FAIL_TO_PASS test(s) → {tests:.2f}; statement of {body_length} chars → {length:.2f}"


def urgency_rule(created_at: datetime | None, now: datetime, labels: Iterable[str] = ()) -> tuple[float, str]:
    urgent = _found(_words(" ".join(labels)), URGENT_LABELS)
    if created_at is None:
        value, why = 0.5, "the issue's date is unknown"
    else:
        moment = created_at if created_at.tzinfo else created_at.replace(tzinfo=UTC)
        age = max(0.0, (now - moment).total_seconds() / 86400)
        value, why = round(age / (age + 30), 3), f"opened {age:.0f} day(s) ago: age/(age+30)"
    if urgent and value < 0.9:
        return 0.9, why + f"; label {urgent[0]} raises it to 0.9"
    return value, why


def prioritise(
    task: NewTask, hints: PriorityHints, weights: PriorityWeights, health: tuple[int, int], now: datetime
) -> PriorityBreakdown:
    """The breakdown of one task: given factors as they are, the others by rule. `health` = (passed, judged)."""
    rules = {
        "health": lambda: health_rule(*health),
        "impact": lambda: impact_rule(hints.labels, task.title, task.body),
        "solvability": lambda: solvability_rule(len(task.fail_to_pass), len(task.body)),
        "urgency": lambda: urgency_rule(hints.created_at, now, hints.labels),
    }
    factors: dict[str, FactorEntry] = {}
    for name in FACTORS:
        weight = float(getattr(weights, name))
        given = hints.given(name)
        if given is not None:
            value, source, why = given, FactorSource.GIVEN, "given with the task"
        else:
            value, why = rules[name]()
            source = FactorSource.RULE
        factors[name] = FactorEntry(
            value=value, weight=weight, product=round(value * weight, 6), source=source, why=why
        )
    total = round(sum(entry.product for entry in factors.values()), 6)
    return PriorityBreakdown(factors=factors, total=total, priority=round(total * SCALE), computed_at=now)


def detect_language(paths: Iterable[str]) -> str | None:
    """The language most of a tree's source files are in (by extension), or None when it has none we know."""
    counts = Counter(EXTENSIONS.get(PurePosixPath(path).suffix.lower()) for path in paths)
    counts.pop(None, None)
    if not counts:
        return None
    return sorted(counts.items(), key=lambda item: (-item[1], item[0] or ""))[0][0]


def render_breakdown(breakdown: PriorityBreakdown) -> list[str]:
    """Lines for `fleet task show`: each factor, its weight, product and where it came from."""
    lines = [f"priority     {breakdown.total:.3f} (stored as {breakdown.priority})"]
    for name, entry in breakdown.factors.items():
        lines.append(
            f"  {name:<12} {entry.value:.3f} × {entry.weight:g} = {entry.product:.3f}  {entry.source.value}: {entry.why}"
        )
    return lines
