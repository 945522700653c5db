"""Render docs/json.md from the pydantic models the commands print.

`bash scripts/docs.sh` writes it (tests/operator/test_json_contract.py fails when it is stale).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from supervisor.cli import contract, task_contract
from supervisor.cli.delivery_cmds import TASK_DELIVERY_JSON
from supervisor.cli.fleet_cmds import FLEET_JSON
from supervisor.store.tasks.bench_results import BenchReport
from supervisor.work.mirror import FetchReport

HEADER = """# JSON output of `supervisor` commands

Generated from the pydantic models in `supervisor/cli/contract.py` (and the gate's own models)
by `bash scripts/docs.sh`; `tests/operator/test_json_contract.py` fails when it is stale.

The contract:

- Every command that prints data takes `--json` and prints one JSON document on stdout (streams,
  `logs` and `start`, print JSON Lines: one object per line).
- Every key below is always present; an unknown value is `null`, never a missing key.
- Timestamps are ISO-8601 in UTC (`2026-11-29T08:42:34.123456Z`).
- An error under `--json` prints an `ErrorOut` document on stdout instead, with the exit code
  it names: 1 failed or rejected, 2 usage, 3 infrastructure (no Docker engine, no permission, an
  image that cannot be built; for `status`: no supervisor runs), 4 `start` gave up after
  too many rollbacks.
"""

COMMANDS: list[tuple[str, type[BaseModel]]] = [
    ("init", contract.InitOut),
    ("start (JSON Lines)", contract.StartEvent),
    ("status", contract.StatusOut),
    ("stop", contract.StopOut),
    ("logs (JSON Lines)", contract.LogLine),
    ("feedback", contract.FeedbackOut),
    ("demo", contract.DemoOut),
    ("candidates (an array of these)", contract.CandidateRow),
    ("show", contract.ShowOut),
    *((title, model) for title, model in contract.REUSED.items()),
    ("budget", contract.BudgetOut),
    ("image build / image show", contract.ImageOut),
    ("reconcile", contract.ReconcileOut),
    ("config check", contract.ConfigCheckOut),
    ("project add", contract.ProjectAddOut),
    ("project show / project list (an array of these)", contract.ProjectOut),
    ("project fetch", FetchReport),
    ("project remove", contract.ProjectRemoveOut),
    ("task add / cancel / retry; task list (an array of these)", task_contract.TaskOut),
    ("task show", task_contract.TaskShowOut),
    ("task import", task_contract.TaskImportOut),
    ("task bench", BenchReport),
    *TASK_DELIVERY_JSON,
    *FLEET_JSON,
    ("any command, on error", contract.ErrorOut),
]


def _type(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        return f"`{str(prop['$ref']).rsplit('/', 1)[-1]}`"
    if "anyOf" in prop:
        return " or ".join(_type(option) for option in prop["anyOf"])
    if "enum" in prop:
        return " / ".join(f"`{value}`" for value in prop["enum"])
    if "const" in prop:
        return f"`{prop['const']}`"
    kind = prop.get("type", "any")
    if kind == "array":
        return f"array of {_type(prop.get('items', {}))}"
    if kind == "object" and isinstance(prop.get("additionalProperties"), dict):
        return f"object of {_type(prop['additionalProperties'])}"
    if prop.get("format") == "date-time":
        return "timestamp"
    if kind == "string" and prop.get("pattern"):
        return "decimal string"
    return str(kind)


def _table(name: str, schema: dict[str, Any]) -> str:
    lines = [
        f"`{name}`" + (f": {schema['description'].strip()}" if schema.get("description") else ""),
        "",
        "| key | type | meaning |",
        "| --- | --- | --- |",
    ]
    for key, prop in schema.get("properties", {}).items():
        meaning = " ".join((prop.get("description") or "").split()).replace("|", "\\|")
        lines.append(f"| `{key}` | {_type(prop)} | {meaning} |")
    return "\n".join(lines)


def render() -> str:
    blocks: list[str] = []
    shared: dict[str, dict[str, Any]] = {}
    for title, model in COMMANDS:
        schema = model.model_json_schema(mode="serialization")
        shared.update(schema.pop("$defs", {}))
        blocks.append(f"## `supervisor {title}`\n\n{_table(model.__name__, schema)}")
    blocks.append("## Shared types\n\n" + "\n\n".join(_table(name, shared[name]) for name in sorted(shared)))
    return HEADER + "\n" + "\n\n".join(blocks) + "\n"


if __name__ == "__main__":
    print(render(), end="")
