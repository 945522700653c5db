"""What the ledger records for one answered call, when the upstream's `usage` cannot be taken as is.

Any server that speaks the Messages API can be the upstream (Ollama, llama.cpp, vLLM), and such
servers may report approximate usage, part of it, or none. The cap check already holds the
request's worst case (input bounded from the body's size, output by `max_tokens`); settling only
decides how much of that reservation becomes spend. The rules, per side of the request:

- **No usage object** (or not a JSON object): both sides are charged at the reserved worst case.
- **A count** is taken only if it is a JSON integer from 0 to `CREDIBLE_MAX` (no bool, float,
  string, null, negative number, or absurdly large number). A missing cache count means 0 (many
  servers never send them); a missing `input_tokens` or `output_tokens`, or any count present but
  not credible, makes its side unknown.
- **An unknown side** is charged at its worst case: the input side as the reserved input bound at the
  dearest input rate, the output side as `max_tokens`.
- **Output below what was obviously produced**: the output count is raised to the content bytes the
  route saw (text, thinking, tool input) divided by `MAX_BYTES_PER_TOKEN`, but never above
  `max_tokens`.
- A credible count above the worst case is recorded as reported (the truth, with a
  `reservation_exceeded` event), as before.

So missing usage never settles at zero, and no number an upstream sends can make the ledger record
less than the route saw produced or more than `CREDIBLE_MAX` per count.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from supervisor.route.pricing import ModelPrice, Usage

CREDIBLE_MAX = 100_000_000  # no single call bills this many tokens of one kind (context windows are ~1M)
MAX_BYTES_PER_TOKEN = 8  # tokenizers average 2-5 bytes a token; 8 leaves room for long whitespace tokens
_INPUT_FIELDS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
_OPTIONAL = frozenset({"cache_creation_input_tokens", "cache_read_input_tokens"})
_MILLION = Decimal(1_000_000)


class Settlement(BaseModel):
    """The usage to record, which sides were charged at their worst case, and why (for the ledger note)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    usage: Usage
    worst_input: bool = False
    worst_output: bool = False
    notes: tuple[str, ...] = Field(default=())

    @property
    def note(self) -> str | None:
        return "; ".join(self.notes)[:300] or None


def _count(raw: dict[str, Any], name: str) -> tuple[int | None, str | None]:
    """The credible count for `name`, or None with the reason it is not one."""
    if name not in raw:
        return (0, None) if name in _OPTIONAL else (None, f"{name} missing")
    value = raw[name]
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= CREDIBLE_MAX:
        return value, None
    return None, f"{name} not a credible count ({_describe(value)})"


def _describe(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > CREDIBLE_MAX:
        return f"{'-' if value < 0 else ''}{len(str(abs(value)))}-digit integer"
    return repr(value)[:40]


def settle(raw: object, worst: Usage, produced_bytes: int) -> Settlement:
    """Apply the module's rules to an upstream `usage` value (any JSON) for a call reserved at `worst`."""
    if not isinstance(raw, dict):
        return Settlement(usage=worst, worst_input=True, worst_output=True, notes=("no usage reported",))
    notes: list[str] = []
    counts: dict[str, int] = {}
    for name in _INPUT_FIELDS:
        value, why = _count(raw, name)
        if why:
            notes.append(why)
        if value is not None:
            counts[name] = value
    worst_input = len(counts) < len(_INPUT_FIELDS)
    if worst_input:
        counts = {"input_tokens": worst.input_tokens}
    output, output_why = _count(raw, "output_tokens")
    if output is None:
        notes.append(f"{output_why}: output charged at max_tokens")
        output = worst.output_tokens
    else:
        floor = min(produced_bytes // MAX_BYTES_PER_TOKEN, worst.output_tokens)
        if output < floor:
            notes.append(f"output_tokens {output} below the {produced_bytes} bytes produced: charged {floor}")
            output = floor
    if worst_input:
        notes.append("input charged at its reserved bound")
    return Settlement(
        usage=Usage(output_tokens=output, **counts),
        worst_input=worst_input,
        worst_output=output_why is not None,
        notes=tuple(notes),
    )


def settled_cost(price: ModelPrice, settlement: Settlement, reserved_usd: Decimal) -> Decimal:
    """The dollars to record: an unknown input side at the dearest input rate, as it was reserved."""
    if settlement.worst_input and settlement.worst_output:
        return reserved_usd
    cost = price.cost(settlement.usage)
    if settlement.worst_input:
        dearest = max(price.input, price.cache_write, price.cache_read)
        cost += (dearest - price.input) * settlement.usage.input_tokens / _MILLION
    return cost


def produced_bytes(content: object) -> int:
    """UTF-8 bytes of what a whole (non-streamed) message produced: text, thinking, tool input."""
    if not isinstance(content, list):
        return 0
    return sum(block_bytes(block) for block in content if isinstance(block, dict))


def block_bytes(block: dict[str, Any]) -> int:
    """Produced bytes of one content block or delta (`text`, `thinking`, `partial_json`, tool `input`)."""
    total = 0
    for key in ("text", "thinking", "partial_json"):
        value = block.get(key)
        if isinstance(value, str):
            total += len(value.encode("utf-8", "surrogatepass"))
    tool_input = block.get("input")
    if tool_input:
        total += len(json.dumps(tool_input, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace"))
    return total
