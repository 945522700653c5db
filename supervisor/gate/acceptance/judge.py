"""The judge: trusted code that reads what the candidate did as data and never imports it.

Inputs are the tool results the agent sent to the supervisor's scripted model, the files it left in
its workspace and outbox (read without following links, size-capped), what it printed, and its
exit code. Every problem is tagged with the kind of check that failed.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import ValidationError

from supervisor.gate.acceptance.model_server import RecordedResult
from supervisor.gate.acceptance.models import CheckKind, Expectations, Problem, Scenario, TextExpectation
from supervisor.gate.acceptance.readback import SafeTree, UnsafeFile
from supervisor.store.protocol import ProtocolError, parse_proposal

JOURNAL = "agent/journal"
GOALS = "agent/goals"
_ENTRY = re.compile(r"^## (\d{4}-\d{2}-\d{2}T\S+) +(\S.*?)\s*$")
_DIGITS = re.compile(r"^\d+$")


class Evidence:
    """Everything one run left behind, gathered by the scenario run (scenario_run.py)."""

    def __init__(
        self,
        results: dict[str, RecordedResult],
        workspace: Path,
        outbox: Path,
        exit_code: int | None,
        timed_out: bool,
        output: str,
    ) -> None:
        self.results = results
        self.workspace = SafeTree(workspace)
        self.outbox = SafeTree(outbox)
        self.exit_code = exit_code
        self.timed_out = timed_out
        self.output = output


def judge(scenario: Scenario, evidence: Evidence) -> list[Problem]:
    if evidence.timed_out:
        return [Problem(kind=CheckKind.DEADLINE, detail=f"the agent ran past the {scenario.deadline_s:g} s deadline")]
    expect = scenario.expect
    problems = _tool_results(scenario, evidence)
    problems += _files(expect, evidence.workspace)
    problems += _journal(expect, evidence.workspace)
    problems += _goal(expect, evidence.workspace)
    problems += _proposals(expect, evidence.outbox)
    if expect.output is not None:
        problems += _text(CheckKind.OUTPUT, "output", expect.output, evidence.output)
    if expect.exit_code is not None and evidence.exit_code != expect.exit_code:
        problems.append(
            Problem(kind=CheckKind.EXIT_CODE, detail=f"exit code {evidence.exit_code}, expected {expect.exit_code}")
        )
    return problems


def _text(kind: CheckKind, what: str, expectation: TextExpectation, text: str) -> list[Problem]:
    return [Problem(kind=kind, detail=f"{what} {problem}") for problem in expectation.problems(text)]


def _tool_results(scenario: Scenario, evidence: Evidence) -> list[Problem]:
    problems = []
    for call in scenario.calls():
        got = evidence.results.get(call.key)
        label = f"{call.tool} call {call.key!r}"
        if got is None:
            if not call.expect.required:
                continue
            problems.append(Problem(kind=CheckKind.TOOL_RESULT, detail=f"{label}: no result was sent back"))
            continue
        if got.is_error == call.expect.ok:
            state = "an error" if got.is_error else "a normal result"
            problems.append(Problem(kind=CheckKind.TOOL_RESULT, detail=f"{label}: {state}: {got.text[:300]!r}"))
        problems += _text(CheckKind.TOOL_RESULT, f"{label}: result", call.expect, got.text)
    return problems


def _read(tree: SafeTree, relative: str, kind: CheckKind) -> tuple[str | None, list[Problem]]:
    try:
        return tree.text(relative), []
    except UnsafeFile as exc:
        return None, [Problem(kind=kind, detail=f"refused to read {exc}")]


def _files(expect: Expectations, tree: SafeTree) -> list[Problem]:
    problems = []
    for item in expect.files:
        if not item.exists:
            if tree.lexists(item.path):
                problems.append(Problem(kind=CheckKind.FILES, detail=f"{item.path} exists but must not"))
            continue
        text, refused = _read(tree, item.path, CheckKind.FILES)
        problems += refused
        if text is None and not refused:
            problems.append(Problem(kind=CheckKind.FILES, detail=f"{item.path} is missing"))
        elif text is not None:
            problems += _text(CheckKind.FILES, item.path, item, text)
    return problems


def journal_entries(tree: SafeTree, file: str) -> tuple[list[tuple[str, str]], list[Problem]]:
    """(kind, body) of every entry in every day's `<file>.md`, oldest day first."""
    entries: list[tuple[str, str]] = []
    problems: list[Problem] = []
    for year in filter(_DIGITS.match, tree.listdir(JOURNAL)):
        for month in filter(_DIGITS.match, tree.listdir(f"{JOURNAL}/{year}")):
            for day in filter(_DIGITS.match, tree.listdir(f"{JOURNAL}/{year}/{month}")):
                text, refused = _read(tree, f"{JOURNAL}/{year}/{month}/{day}/{file}.md", CheckKind.JOURNAL)
                problems += refused
                entries += parse_entries(text or "")
    return entries, problems


def parse_entries(text: str) -> list[tuple[str, str]]:
    found: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        match = _ENTRY.match(line)
        if match:
            found.append((match.group(2), []))
        elif found:
            found[-1][1].append(line)
    return [(kind, "\n".join(lines).strip()) for kind, lines in found]


def _journal(expect: Expectations, tree: SafeTree) -> list[Problem]:
    problems = []
    for item in expect.journal:
        entries, refused = journal_entries(tree, item.file)
        problems += refused
        bodies = [body for kind, body in entries if kind == item.kind]
        if not bodies:
            problems.append(Problem(kind=CheckKind.JOURNAL, detail=f"no {item.kind!r} entry in {item.file}.md"))
        elif all(item.problems(body) for body in bodies):
            detail = "; ".join(item.problems(bodies[-1]))
            problems.append(
                Problem(kind=CheckKind.JOURNAL, detail=f"no {item.kind!r} entry in {item.file}.md fits: {detail}")
            )
    return problems


def _goal(expect: Expectations, tree: SafeTree) -> list[Problem]:
    title = expect.goal_completed
    if title is None:
        return []
    active, refused_active = _read(tree, f"{GOALS}/active.md", CheckKind.GOAL)
    done, refused_done = _read(tree, f"{GOALS}/completed.md", CheckKind.GOAL)
    problems = refused_active + refused_done
    heading = re.compile(rf"^## +{re.escape(title)}\s*$", re.MULTILINE)
    if not heading.search(done or ""):
        problems.append(Problem(kind=CheckKind.GOAL, detail=f"goal {title!r} is not in completed.md"))
    if heading.search(active or ""):
        problems.append(Problem(kind=CheckKind.GOAL, detail=f"goal {title!r} is still in active.md"))
    return problems


def _proposals(expect: Expectations, outbox: SafeTree) -> list[Problem]:
    if expect.proposals is None:
        return []
    problems, valid = [], 0
    for name in outbox.listdir("."):
        if not (name.startswith("proposal-") and name.endswith(".json")):
            continue
        try:
            parse_proposal(outbox.read(name, cap=200_000) or b"")
            valid += 1
        except (UnsafeFile, ProtocolError, ValidationError) as exc:
            problems.append(
                Problem(kind=CheckKind.PROPOSAL, detail=f"{name} is not a valid proposal: {str(exc)[:300]}")
            )
    if valid != expect.proposals:
        problems.append(
            Problem(
                kind=CheckKind.PROPOSAL, detail=f"{valid} valid proposals in the outbox, expected {expect.proposals}"
            )
        )
    return problems
