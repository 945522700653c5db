"""Operator commands over the gate: inspect candidates, gate any commit, approve, reject, roll back, audit."""

from __future__ import annotations

import os
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from datetime import UTC
from pathlib import Path
from typing import Any, cast

import click

from supervisor.base.errors import EXIT_FAILED, EXIT_INFRASTRUCTURE, EXIT_OK
from supervisor.base.generation_number import GenerationNumberError, generation_named
from supervisor.cli.common import emit, home_option, json_option, repo_option, resolve_repo, utc
from supervisor.cli.contract import CandidateRow, ShowOut
from supervisor.cli.terminal_text import echo
from supervisor.gate.config import parse_config
from supervisor.gate.gatekeeper import Gatekeeper
from supervisor.gate.scratch import gate_label, own_scratch
from supervisor.store.candidates import CandidateRecord
from supervisor.store.gate_results import GateResult


def _gatekeeper(repo: Path | None) -> Gatekeeper:
    if repo is None:
        home = os.environ.get("OUROBOROS_HOME")
        instance_repo = Path(home or ".") / "repo.git"
        repo = instance_repo if home or instance_repo.is_dir() else Path(".")
    return Gatekeeper(repo, instance=_instance_label(repo))


def _instance_label(repo: Path) -> str:
    """The instance id the gate's own label starts with (`gate_scratch.gate_label`); the next gate on
    this repository removes the containers of one killed before its end."""
    from supervisor.store.instance import Instance

    return Instance(repo.resolve().parent).instance_id if repo.name == "repo.git" else "default"


def _emit(as_json: bool, data: Any, text: str) -> None:
    emit(as_json, data, text)


def _row(r: CandidateRecord) -> CandidateRow:
    return CandidateRow(
        id=r.id,
        branch=r.branch.removeprefix("refs/heads/"),
        state=r.state,
        created_at=utc(r.created_at),
        updated_at=utc(r.updated_at),
        commit=r.commit,
        generation=r.generation,
        summary=r.proposal.summary if r.proposal else None,
        reasons=r.reasons,
    )


def _age(row: CandidateRow) -> str:
    from datetime import datetime

    seconds = int((datetime.now(UTC) - row.created_at).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@click.command("candidates")
@home_option
@repo_option
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="Show the newest N candidates (by id); 0 shows all of them.",
)
@json_option
def candidates_cmd(home: Path | None, repo: Path | None, limit: int, as_json: bool) -> None:
    """List candidates: id, branch, age, state (pending, gating, accepted, rejected, ...) and reason.

    The newest 50 by default, oldest first: after weeks there are thousands (`--limit 0` for all).
    """
    store = _gatekeeper(resolve_repo(home, repo)).store
    records, total = store.newest(limit)
    rows = [_row(r) for r in records]
    lines = [
        f"{row.id:<8} {row.state:<15} {_age(row):>5}  {row.branch}  {'; '.join(row.reasons)[:200]}" for row in rows
    ]
    if total > len(records) and lines:
        lines.append(f"(the newest {len(records)} of {total}; `--limit 0` lists all)")
    lines += [f"unreadable record {path}: move it aside (e.g. to {path.name}.corrupt)" for path in store.corrupt]
    _emit(as_json, rows, "\n".join(lines) or "no candidates yet")


@click.command("show")
@click.argument("candidate")
@home_option
@repo_option
@json_option
def show_cmd(candidate: str, home: Path | None, repo: Path | None, as_json: bool) -> None:
    """Show a candidate: why, diff stat and diff, gate result, failing tests, log tail."""
    gatekeeper = _gatekeeper(resolve_repo(home, repo))
    record = gatekeeper.store.load(candidate)
    if record.commit and gatekeeper.git.rev_parse(record.commit) is None:
        diffstat, diff = "", "(the commit is gone: pruned under the rejected-proposal retention policy)"
    else:
        base = gatekeeper.git.parents(record.commit)[0] if record.commit else record.base
        diffstat = gatekeeper.git.diff(base, record.commit, stat_only=True) if record.commit else ""
        diff = gatekeeper.git.diff(base, record.commit) if record.commit else ""
    if as_json:
        _emit(
            True,
            ShowOut(
                **_row(record).model_dump(),
                base=record.base,
                why=record.proposal.why if record.proposal else None,
                refused=record.refused,
                approved=record.approved,
                gate=record.gate,
                failures=record.gate.failures if record.gate else [],
                diffstat=diffstat,
                diff=diff,
            ),
            "",
        )
        return
    gate = record.gate
    lines = [
        f"candidate {record.id}  state {record.state}  commit {record.commit or '-'}",
        f"summary: {record.proposal.summary if record.proposal else '-'}",
        "",
        (record.proposal.why if record.proposal else "(no proposal yet)"),
        "",
    ]
    lines += [f"reason: {reason}" for reason in record.reasons] + [f"refused: {item}" for item in record.refused]
    if gate:
        for one in gate.passes:
            lines.append(
                f"pass {one.name}: {'ok' if one.ok else 'FAILED ' + one.reason} ({one.duration_s:.1f} s, {one.counts})"
            )
        lines += [f"failing: {f.test_id}\n    {f.message[:500]}" for f in gate.failures]
        tail = next((p.log_tail for p in reversed(gate.passes) if p.log_tail), "")
        lines += ["", "log tail:", tail[-1500:]]
    lines += ["", diffstat, "", diff]
    echo("\n".join(lines))


@click.command("gate")
@click.argument("rev", default="HEAD")
@click.option(
    "--base", default=None, help="Also judge REV against this commit: protected paths, no-shrink, base's tests."
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Gate config file; default: gate.toml as committed at the base (or at REV).",
)
@click.option(
    "--junit",
    "junit_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the gate's verdict and every test outcome as a JUnit XML report here.",
)
@home_option
@repo_option
@json_option
def gate_cmd(
    rev: str,
    base: str | None,
    config_path: Path | None,
    junit_path: Path | None,
    home: Path | None,
    repo: Path | None,
    as_json: bool,
) -> None:
    """Run the gate on a commit (default HEAD) in a fresh container.

    Exit 0 pass, 1 rejected, 2 usage, 3 infrastructure (no Docker engine, no image, a container
    error: nothing was judged). A repository whose git config could run programs or pull in other
    files (filters, includeIf as actions/checkout writes) is gated from a private mirror clone,
    so none of its config is read.
    """
    from supervisor.cli.private_clone import in_worktree, worktree_head

    source = resolve_repo(home, repo)
    head = worktree_head(source or Path("."))
    rev, base = in_worktree(rev, head), in_worktree(base, head)
    with tempfile.TemporaryDirectory(prefix="ouroboros-gate-") as scratch:
        gatekeeper = _gatekeeper(_private_if_needed(source, Path(scratch)))
        for name in (rev, base):
            if name is not None and gatekeeper.git.rev_parse(name) is None:
                raise click.UsageError(f"{name!r} names no commit in {gatekeeper.common}")
        config = parse_config(config_path.read_text(), str(config_path)) if config_path else None
        # The engine and the image before judging, so a missing engine is exit 3, never a "rejected" verdict.
        image = gatekeeper.gate_runner.agent_image(progress=lambda message: click.echo(message, err=True))
        engine, instance = gatekeeper.gate_runner.engine, gatekeeper.gate_runner.instance
        with own_scratch(
            gatekeeper.state_dir,
            lambda message: click.echo(message, err=True),
            reap=lambda run: engine.reconcile(instance=gate_label(instance, run)),
        ) as folder:
            gating = Gatekeeper(gatekeeper.common, engine=engine, image=image, instance=instance, gate_folder=folder)
            result = gating.gate_rev(rev, base=base, config=config)
    _report_gate(result, junit_path, as_json)


def _private_if_needed(repo: Path | None, scratch: Path) -> Path | None:
    from supervisor.cli.private_clone import needs_private_clone, private_clone

    if repo is None:
        home = os.environ.get("OUROBOROS_HOME")
        if home or Path("repo.git").is_dir():
            return None  # an instance: its config is the supervisor's own
        repo = Path(".")
    return private_clone(repo, scratch / "mirror.git") if needs_private_clone(repo) else repo


def _report_gate(result: GateResult, junit_path: Path | None, as_json: bool) -> None:
    if junit_path:
        junit_path.write_bytes(verdict_junit(result))
    verdict = "PASS" if result.passed else "FAIL"
    if result.needs_approval:
        verdict = "PASS (changes existing tests: needs approval)"
    text = [f"gate {verdict} {result.commit[:12]} in {result.duration_s:.1f} s"]
    text += [f"  {one.name}: {'ok' if one.ok else one.reason} {one.counts}" for one in result.passes]
    text += [f"  reason: {reason}" for reason in result.reasons]
    text += [f"  failing: {f.test_id}" for f in result.failures[:30]]
    _emit(as_json, result, "\n".join(text))
    infrastructure = any(one.reason.startswith("container error:") for one in result.passes)
    sys.exit(EXIT_OK if result.passed else EXIT_INFRASTRUCTURE if infrastructure else EXIT_FAILED)


def verdict_junit(result: GateResult) -> bytes:
    """A JUnit document: one case for the gate's own verdict, then every test the candidate pass ran."""
    suite = ElementTree.Element("testsuite", name="ouroboros-gate")
    verdict = ElementTree.SubElement(suite, "testcase", classname="ouroboros.gate", name="verdict")
    if not result.passed:
        ElementTree.SubElement(verdict, "failure", message="; ".join(result.reasons)[:2000])
    messages = {f.test_id: f.message for f in result.failures}
    for test_id, outcome in sorted(result.test_ids.items()):
        classname, _, name = test_id.partition("::")
        case = ElementTree.SubElement(suite, "testcase", classname=classname, name=name)
        if outcome == "failed":
            ElementTree.SubElement(case, "failure", message=messages.get(test_id, "")[:2000])
        elif outcome == "skipped":
            ElementTree.SubElement(case, "skipped")
    suite.set("tests", str(len(suite)))
    suite.set("failures", str(sum(1 for case in suite if case.find("failure") is not None)))
    # encoding="utf-8" returns bytes; the stubs type any named encoding but "unicode" as Any.
    return cast(bytes, ElementTree.tostring(suite, xml_declaration=True, encoding="utf-8"))


def _verdict_text(verdict: Any) -> str:
    lines = [
        f"candidate {verdict.candidate}: {verdict.state}"
        + (f" as generation {verdict.generation}" if verdict.generation is not None else "")
    ]
    return "\n".join(lines + [f"  reason: {reason}" for reason in verdict.reasons])


@click.command("approve")
@click.argument("candidate")
@home_option
@repo_option
@json_option
def approve_cmd(candidate: str, home: Path | None, repo: Path | None, as_json: bool) -> None:
    """Let a candidate that changes existing tests reach main (re-gated first if main moved)."""
    verdict = _gatekeeper(resolve_repo(home, repo)).approve(candidate)
    _emit(as_json, verdict, _verdict_text(verdict))


@click.command("reject")
@click.argument("candidate")
@click.option("--reason", default="rejected by the operator", show_default=True, help="Recorded in log and journal.")
@home_option
@repo_option
@json_option
def reject_cmd(candidate: str, reason: str, home: Path | None, repo: Path | None, as_json: bool) -> None:
    """Reject a waiting candidate; it stays inspectable under refs/ouroboros/rejected/."""
    verdict = _gatekeeper(resolve_repo(home, repo)).reject(candidate, reason)
    _emit(as_json, verdict, _verdict_text(verdict))


def _generation_or_commit(value: str | None) -> str | None:
    """A number not written as one (`²`, `0010`, `-1`) is a usage error here, before anything is read."""
    if value is not None:
        try:
            generation_named(value)
        except GenerationNumberError as exc:
            raise click.BadParameter(f"{exc}; pass a generation from `git tag -l 'gen/*'` or a commit") from exc
    return value


@click.command("rollback")
@click.option(
    "--to",
    "to",
    default=None,
    callback=lambda _ctx, _param, value: _generation_or_commit(value),
    help="Generation number (3 or gen/3) or a commit that passed the gate; default: the previous generation.",
)
@home_option
@repo_option
@json_option
def rollback_cmd(to: str | None, home: Path | None, repo: Path | None, as_json: bool) -> None:
    """Move main back to a commit that passed the gate; the rolled-back commits stay reachable."""
    result = _gatekeeper(resolve_repo(home, repo)).rollback(to)
    _emit(
        as_json,
        result,
        f"main rolled back {result.previous[:12]} → {result.target[:12]} (generation {result.generation}); "
        f"old main kept at {result.kept_as}",
    )


@click.command("log")
@click.option("-n", "count", type=click.IntRange(min=1), default=20, show_default=True, help="How many records.")
@home_option
@repo_option
@json_option
def log_cmd(count: int, home: Path | None, repo: Path | None, as_json: bool) -> None:
    """Show the last decisions (accepted, rejected, approvals, rollbacks), oldest first."""
    records = _gatekeeper(resolve_repo(home, repo)).log.tail(count)
    lines = [
        f"{r.seq:>4} {r.at[:19]} {r.kind:<15} {r.candidate or '-':<7} {(r.commit or '-')[:12]} "
        f"{'; '.join(r.reasons)[:120]}"
        for r in records
    ]
    _emit(as_json, records, "\n".join(lines) or "no decisions yet")


@click.command("verify-log")
@home_option
@repo_option
@json_option
def verify_log_cmd(home: Path | None, repo: Path | None, as_json: bool) -> None:
    """Check the decision log's hash chain; exit 1 and name the first broken line if tampered."""
    result = _gatekeeper(resolve_repo(home, repo)).log.verify()
    text = (
        f"decision log OK ({result.records} records)"
        if result.ok
        else f"decision log BROKEN at line {result.broken_line}: {result.problem}"
    )
    _emit(as_json, result, text)
    sys.exit(0 if result.ok else 1)


COMMANDS = [candidates_cmd, show_cmd, gate_cmd, approve_cmd, reject_cmd, rollback_cmd, log_cmd, verify_log_cmd]
