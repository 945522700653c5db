"""The JSON every `supervisor` command prints under --json: one model per command, documented in docs/json.md.

Rules (checked by tests/operator/test_json_contract.py): every key is always present (null when
unknown, never left out), timestamps are ISO-8601 in UTC, errors are `ErrorOut`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from supervisor.gate.retention import SpaceReport
from supervisor.store.decision_log import Decision, VerifyResult
from supervisor.store.gate_results import Failure, GateResult
from supervisor.store.projects import ProjectConfig
from supervisor.store.verdicts import RollbackResult, Verdict, VerdictSummary
from supervisor.work.mirror import FetchReport


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(_Out):
    kind: str = Field(description="`usage`, `error`, or the error's class, e.g. `EngineUnavailableError`.")
    message: str = Field(description="What went wrong and what to do about it.")
    exit_code: int = Field(description="The process exit code (docs/operations.md, Exit codes).")


class ErrorOut(_Out):
    """Any command under --json, when it fails: printed on stdout instead of the command's document."""

    error: ErrorBody


class InitOut(_Out):
    """`supervisor init --json`."""

    home: str = Field(description="The instance directory (absolute).")
    repo: str = Field(description="Its bare agent repository, HOME/repo.git.")
    config: str = Field(description="Its configuration, HOME/ouroboros.toml.")
    memory: str = Field(description="The agent's journal and goals, HOME/memory.")
    generation: int | None = Field(description="The gated generation 0; null with --no-gate.")
    gated: bool = Field(description="Whether generation 0 was gated now (`start` gates it otherwise).")


class StartEvent(_Out):
    """`supervisor start --json`: one JSON Lines record per progress message, then one `exit` record."""

    at: datetime = Field(description="UTC.")
    kind: Literal["progress", "exit"]
    message: str = Field(description="What the supervisor is doing (the text it prints on stderr without --json).")
    exit_code: int | None = Field(description="Set on the `exit` record only.")


class Spend(_Out):
    tokens: int
    usd: str = Field(description='A decimal string, e.g. "0.0123".')


class StatusOut(_Out):
    """`supervisor status --json` (exit 0 when a supervisor runs, 3 when none does)."""

    running: bool = Field(description="A supervisor holds the instance lock right now.")
    state: str = Field(description="never started, starting, running, gating, idle, stopping, stopped.")
    pid: int | None = Field(description="The running supervisor's pid (in its own PID namespace).")
    started_at: datetime | None = Field(description="When the last (or current) supervisor run started.")
    generation: int | None = Field(description="The generation main is at (null: not gated yet).")
    commit: str | None = Field(description="main's commit; when nothing runs, read from the repository.")
    generation_since: datetime | None = Field(description="When the agent started on this generation.")
    candidate: str | None = Field(description="The agent's current candidate (its workspace).")
    agent_container: str | None = Field(description="The agent container's id while one runs.")
    probation: str = Field(description="n/a, on probation, or passed.")
    restarts: int = Field(description="Agent crashes restarted in this supervisor run.")
    verdicts: list[VerdictSummary] = Field(description="The last five.")
    message: str = Field(description="The proposal being gated, or why the supervisor stopped.")
    tokens: Spend = Field(description="LLM spend in total (ledger).")
    repository: SpaceReport | None = Field(
        default=None, description="Space the agent repository uses (null: unreadable)."
    )
    checked_at: datetime = Field(description="When this was read (UTC).")


class StopOut(_Out):
    """`supervisor stop --json`."""

    stopped: int = Field(description="The pid that was asked to stop.")
    via: Literal["control", "signal"] = Field(description="The control file, or SIGTERM to a local pid.")
    seconds: float


class LogLine(_Out):
    """`supervisor logs --json`: JSON Lines, one record per line of the agent's output."""

    line: str = Field(description="One line of the agent's output, without its newline, as written.")


class FeedbackOut(_Out):
    """`supervisor feedback --json`."""

    written: str = Field(description="The journal file the note was appended to.")


class DemoOut(_Out):
    """`supervisor demo --json`."""

    home: str = Field(description="The throw-away instance the demo made (kept for inspection).")
    verdicts: list[VerdictSummary] = Field(description="One per gated proposal, in order.")
    tasks: list[DemoTask] = Field(default_factory=list, description="The sample project's tasks and their verdicts.")


class DemoTask(_Out):
    """One task of the demo, as its verdict left it."""

    id: int
    title: str
    state: str = Field(description="passed, failed, gave-up, infrastructure, ...")
    reason: str = ""
    fail_to_pass_passed: list[str] = Field(default_factory=list)
    fail_to_pass_failed: list[str] = Field(default_factory=list)
    regressions: list[str] = Field(default_factory=list)
    branch: str | None = Field(default=None, description="The task branch in the project mirror.")


class CandidateRow(_Out):
    """`supervisor candidates --json`: an array of these, oldest first."""

    id: str = Field(description="GEN-N: the generation it started from and its number there.")
    branch: str = Field(description="Its branch, e.g. ouroboros/candidate/0-1.")
    state: str = Field(description="pending, gating, accepted, rejected, needs-approval, ...")
    created_at: datetime
    updated_at: datetime
    commit: str | None = Field(description="The commit judged (null before the agent proposed).")
    generation: int | None = Field(description="The generation it became, if accepted.")
    summary: str | None = Field(description="The proposal's one-line summary (agent-written).")
    reasons: list[str] = Field(description="Why it was rejected or held (the gate's words).")


class ShowOut(CandidateRow):
    """`supervisor show ID --json`."""

    base: str = Field(description="main when the candidate was created.")
    why: str | None = Field(description="The proposal's reason (agent-written; becomes the commit message).")
    refused: list[str] = Field(description="Workspace entries refused as tricks (symlinks out, FIFOs, ...).")
    approved: bool = Field(description="An operator approved its change to existing tests.")
    gate: GateResult | None = Field(description="The gate's full result; null before gating.")
    failures: list[Failure] = Field(description="Failing tests (also inside `gate`).")
    diffstat: str = Field(description="`git diff --stat` against its parent.")
    diff: str = Field(description="The full diff against its parent.")


class ImageOut(_Out):
    """`supervisor image build --json` and `supervisor image show --json`."""

    image: str | None = Field(description="The agent image tag; null if it is not built yet (show).")
    present: bool = Field(description="The agent image exists on this engine.")
    base: str = Field(description="The base image it is (or would be) built on.")
    base_present: bool = Field(description="The base exists on this engine.")
    seconds: float = Field(description="How long the command took.")


class ContainerRow(_Out):
    id: str = Field(description="The full container id.")
    name: str
    role: str | None = Field(description="agent, gate, probe (label io.ouroboros.role).")
    instance: str | None = Field(description="Label io.ouroboros.instance: which instance started it.")
    run_id: str | None = Field(description="Label io.ouroboros.run-id.")
    status: str = Field(description="The engine's state: running, exited, created, ...")


class ReconcileOut(_Out):
    """`supervisor reconcile --json`."""

    scope: Literal["instance", "all"]
    instance: str | None = Field(description="The instance label value; null with --all.")
    dry_run: bool
    containers: list[ContainerRow] = Field(description="What was removed (or would be, with --dry-run).")


class ConfigFile(_Out):
    path: str = Field(description="The file, or `REPO main:gate.toml` for the committed gate config.")
    kind: Literal["ouroboros.toml", "gate.toml"]
    ok: bool
    errors: list[str] = Field(description="What is wrong, one entry per problem; empty when ok.")


class ConfigCheckOut(_Out):
    """`supervisor config check --json` (exit 0 all valid, 1 otherwise)."""

    ok: bool = Field(description="Every file checked is valid.")
    files: list[ConfigFile]


class LedgerSpend(_Out):
    """Spend in one scope, as the route's ledger counts it."""

    tokens: int
    usd: Decimal
    requests: int


class CycleSpend(LedgerSpend):
    id: str


class BudgetSpend(_Out):
    total: LedgerSpend
    day: LedgerSpend = Field(description="Today (UTC).")
    last_cycle: CycleSpend | None = Field(description="The latest cycle in the ledger; null before the first.")


class BudgetCap(_Out):
    scope: Literal["cycle", "day", "total"]
    key: str = Field(description="The cycle id, the UTC day, or 'all'.")
    unit: Literal["tokens", "usd"]
    spent: Decimal
    cap: Decimal
    fraction: float
    reserved: Decimal = Field(description="Held right now by requests in flight (worst case, settled when they end).")
    asked: Decimal = Field(description="Always 0 here; the route fills it in when it refuses a request.")
    reached: bool


class BudgetOut(_Out):
    """`supervisor budget --json`."""

    ledger: str
    config: str | None = Field(description="The file the caps came from; null: defaults.")
    day: str = Field(description="The UTC day, YYYY-MM-DD.")
    spend: BudgetSpend
    caps: list[BudgetCap]
    refusing: bool = Field(description="A cap is reached: the route refuses new requests.")
    torn_tail: bool = Field(description="The ledger's last line was cut short (a crash while writing).")


class ProjectOut(_Out):
    """`supervisor project show --json`, and each item of `project list --json`."""

    config: ProjectConfig = Field(description="The project's project.toml, validated (docs/projects.md).")
    folder: str = Field(description="HOME/projects/NAME.")
    mirror: str = Field(description="The supervisor's bare mirror, HOME/projects/NAME/mirror.git.")
    source: str = Field(description="The source, a password or token in its URL shown as ***.")
    head: str | None = Field(description="The commit the default branch points at in the mirror; null: not there.")
    refs: int = Field(description="Branches and tags in the mirror.")
    size_mb: float = Field(description="The mirror's size on disk.")


class ProjectAddOut(_Out):
    """`supervisor project add --json`."""

    project: ProjectOut
    fetch: FetchReport


class ProjectRemoveOut(_Out):
    """`supervisor project remove --json`."""

    removed: str = Field(description="The project's name.")
    folder: str = Field(description="The folder deleted with its mirror (tasks of the project are not touched).")


# Models the gate commands print as they are (owned by the gate; listed here for the docs).
REUSED: dict[str, type[BaseModel]] = {
    "gate": GateResult,
    "approve / reject": Verdict,
    "rollback": RollbackResult,
    "log (an array of these)": Decision,
    "verify-log": VerifyResult,
}
