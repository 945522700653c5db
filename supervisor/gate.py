"""The container test gate: judge one commit against its base, failing closed on anything unclear.

A verdict is built from data the supervisor produced itself: the diff it computed between two
commits, the exit code the engine saw, and a JUnit report read back from a directory that only
that one container could write. Order of checks (cheapest first, see docs/gate.md):

1. protected paths touched → reject, no test runs;
2. pass "candidate": the candidate's suite on the candidate's code; must exit 0, collect tests and
   agree with its report;
3. every test id that exists on the base must exist in the candidate, and each that passed there
   must pass here (the suite may grow, never shrink or weaken into skips);
4. only if the candidate changed or deleted existing test files, or added a conftest.py (which can
   rewrite how every other test runs): pass "main-tests", the base's test folders grafted onto the
   candidate's code, every base test must pass; the verdict then needs approval.
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

from sandbox import ContainerSpec, Limits, Mount
from supervisor.acceptance.models import AcceptanceReport
from supervisor.gate_config import GateConfig, protected_hits
from supervisor.git_ops import Git, TreeEntry
from supervisor.junit import MAX_REPORT_BYTES, JUnitReport, MalformedReportError, parse_report

SRC_DIR = "/src"
REPORT_PATH = "/tmp/ouroboros-junit.xml"  # on the container's size-capped tmpfs
LOG_TAIL_CHARS = 4000
OUTPUT_CAP = 2 * MAX_REPORT_BYTES + 2_000_000  # the report travels in the tail half of the output

# Runs the test command, then prints the report between per-run markers: the container needs no
# writable host folder at all, so it cannot fill the host's disk or plant links for us to follow.
WRAPPER = 'rc=0; "$@" || rc=$?; echo; echo "$OUROBOROS_BEGIN"; cat {report}; echo; echo "$OUROBOROS_END"; exit $rc'

PassName = Literal["candidate", "main-tests", "baseline", "acceptance"]
BaselineLoader = Callable[[str, "GateConfig"], "dict[str, str] | None"]


class Failure(BaseModel):
    model_config = ConfigDict(extra="forbid")

    test_id: str
    message: str = ""


class PassResult(BaseModel):
    """One container run of the test command."""

    model_config = ConfigDict(extra="forbid")

    name: PassName
    ok: bool
    reason: str = Field(default="", description="Why the pass failed; empty when it passed.")
    exit_code: int | None = None
    timed_out: bool = False
    duration_s: float = 0.0
    counts: dict[str, int] = Field(default_factory=dict)
    failures: list[Failure] = Field(default_factory=list)
    log_tail: str = ""


class GateResult(BaseModel):
    """The whole verdict of the gate on one commit."""

    model_config = ConfigDict(extra="forbid")

    commit: str
    base: str | None
    passed: bool
    needs_approval: bool = False
    reasons: list[str] = Field(default_factory=list)
    protected: list[str] = Field(default_factory=list)
    changed_tests: list[str] = Field(default_factory=list)
    failures: list[Failure] = Field(default_factory=list)
    passes: list[PassResult] = Field(default_factory=list)
    test_ids: dict[str, str] = Field(default_factory=dict, description="Candidate pass: id → outcome.")
    duration_s: float = 0.0
    acceptance: AcceptanceReport | None = Field(default=None, description="Held-out acceptance, operator's eyes only.")


class GateRunner:
    """Runs gate passes in fresh hardened containers through `sandbox`."""

    def __init__(self, git: Git, engine: Any, scratch: Path, image: str | None = None,
                 instance: str = "default") -> None:
        self.git = git
        self.engine = engine
        self.scratch = scratch
        self.image = image
        self.instance = instance

    # -- the verdict ------------------------------------------------------------------------

    def judge(self, commit: str, base: str | None, config: GateConfig,
              baseline: BaselineLoader | None = None) -> GateResult:
        """Gate `commit`; with a base, also protected paths, no-shrink and main's own tests.

        `baseline(base, config)` gives the base's test outcomes (e.g. from a cache); it is only
        called once the cheaper checks and the candidate pass have succeeded.
        """
        started = time.monotonic()
        result = self._judge(commit, base, config, baseline or self.baseline)
        if result.passed:  # held-out acceptance: the candidate run for real, judged outside its process
            from supervisor.acceptance.stage import accept

            accept(self, result, config)
        result.duration_s = round(time.monotonic() - started, 3)
        return result

    def _judge(self, commit: str, base: str | None, config: GateConfig,
               load_baseline: BaselineLoader) -> GateResult:
        changes = self.git.changed_paths(base, commit) if base else []
        if base:
            top_level = {entry.path.split("/", 1)[0] for entry in self.git.ls_tree(base)}
            hits = protected_hits([path for _, path in changes], config, top_level)
            if hits:
                return GateResult(commit=commit, base=base, passed=False, protected=hits,
                                  reasons=[f"touches protected paths: {', '.join(hits)}"])
        first, report = self.run_pass(commit, config, "candidate")
        result = GateResult(commit=commit, base=base, passed=first.ok, passes=[first],
                            failures=list(first.failures))
        if report is not None:
            result.test_ids = {test_id: r.outcome for test_id, r in report.tests.items()}
        if not first.ok:
            result.reasons.append(first.reason)
            return result
        if base is None:
            return result
        baseline = load_baseline(base, config)
        if baseline is None:
            return _fail(result, f"could not establish the tests of base {base[:12]}: its own gate run failed")
        shrink = compare_to_baseline(baseline, result.test_ids)
        if shrink:
            return _fail(result, "the suite shrank or weakened: " + "; ".join(shrink[:20]))
        result.changed_tests = [path for status, path in changes if config.is_test_path(path)
                                and (status != "A" or path.rsplit("/", 1)[-1] == "conftest.py")]
        if result.changed_tests:
            self._run_main_tests(result, commit, base, config, baseline)
        return result

    def _run_main_tests(self, result: GateResult, commit: str, base: str, config: GateConfig,
                        baseline: dict[str, str]) -> None:
        grafted = self.graft_tests(commit, base, config)
        second, report = self.run_pass(grafted, config, "main-tests")
        result.passes.append(second)
        result.failures += second.failures
        if not second.ok:
            _fail(result, f"main's own tests fail against the candidate's code: {second.reason}")
            return
        outcomes = {test_id: r.outcome for test_id, r in report.tests.items()} if report else {}
        broken = compare_to_baseline(baseline, outcomes)
        if broken:
            _fail(result, "main's own tests do not all pass against the candidate: " + "; ".join(broken[:20]))
            return
        result.needs_approval = True
        result.reasons.append("changes existing tests: " + ", ".join(result.changed_tests))

    def baseline(self, base: str, config: GateConfig) -> dict[str, str] | None:
        """Test outcomes of the base, by running its own suite (callers cache the answer)."""
        base_pass, report = self.run_pass(base, config, "baseline")
        if report is None or not base_pass.ok:
            return None
        return {test_id: r.outcome for test_id, r in report.tests.items()}

    def graft_tests(self, commit: str, base: str, config: GateConfig) -> str:
        """A tree: the candidate's code with the test folders exactly as they are on the base."""
        keep = [e for e in self.git.ls_tree(commit) if not config.is_test_path(e.path)]
        tests = [e for e in self.git.ls_tree(base) if config.is_test_path(e.path)]
        entries = [TreeEntry(e.mode, e.kind, e.sha, e.path) for e in keep + tests]
        self.scratch.mkdir(parents=True, exist_ok=True)
        return self.git.tree_from_entries(entries, self.scratch)

    # -- one container run ------------------------------------------------------------------

    def run_pass(self, rev: str, config: GateConfig, name: PassName) -> tuple[PassResult, JUnitReport | None]:
        """Export `rev` from git objects, run the test command on it read-only, read the report."""
        run_id = f"gate-{uuid.uuid4().hex[:12]}"
        workdir = self.scratch / run_id
        src = workdir / "src"
        markers = (f"==OUROBOROS-JUNIT-BEGIN-{run_id}==", f"==OUROBOROS-JUNIT-END-{run_id}==")
        try:
            src.mkdir(parents=True)
            self.git.export_tree(rev, src)
            try:
                spec = self._spec(run_id, src, config, markers)
                run = self._engine().run(spec, deadline_s=config.deadline_s, output_cap=OUTPUT_CAP)
            except Exception as exc:  # fail closed on any engine trouble
                return PassResult(name=name, ok=False, reason=f"container error: {exc}"), None
            return _evaluate(name, run, markers, config)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _spec(self, run_id: str, src: Path, config: GateConfig, markers: tuple[str, str]) -> ContainerSpec:
        command = [*config.command, config.junit_option.format(path=REPORT_PATH)]
        wrapped = ["sh", "-c", WRAPPER.format(report=REPORT_PATH), "gate", *command]
        limits = config.limits
        return ContainerSpec(
            image=config.image or self._image(), command=wrapped, run_id=run_id, role="gate",
            instance=self.instance, workdir=SRC_DIR, mounts=[Mount(source=src, target=SRC_DIR)],
            env={**config.env, "HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1", "CI": "true",
                 "OUROBOROS_BEGIN": markers[0], "OUROBOROS_END": markers[1]},
            limits=Limits(memory_mb=limits.memory_mb, cpus=limits.cpus, pids=limits.pids,
                          tmpfs_mb=limits.tmpfs_mb, log_max_mb=max(5, OUTPUT_CAP // 1_000_000 + 1)),
        )

    def _engine(self) -> Any:
        """Connected on first use, so commands that never run a container never need Docker."""
        if self.engine is None:
            from sandbox.engine import DockerEngine

            self.engine = DockerEngine.connect()
        return self.engine

    def _image(self) -> str:
        if self.image is None:
            from sandbox.images import ensure_agent_image

            self.image = ensure_agent_image(self._engine(), progress=lambda _message: None)
        return self.image


def _evaluate(name: PassName, run: Any, markers: tuple[str, str],
              config: GateConfig) -> tuple[PassResult, JUnitReport | None]:
    output, report_text = split_report(run.output, markers)
    base = dict(name=name, exit_code=run.exit_code, timed_out=run.timed_out,
                duration_s=round(run.duration_s, 3), log_tail=output[-LOG_TAIL_CHARS:])
    if run.timed_out:
        return PassResult(**base, ok=False, reason=f"timeout: killed at the {config.deadline_s:g} s deadline"), None
    try:
        if report_text is None:
            raise MalformedReportError("the test command wrote no JUnit report (or it was cut off)")
        report = parse_report(report_text.strip().encode())
    except MalformedReportError as exc:
        return PassResult(**base, ok=False, reason=f"no usable test report: {exc}"), None
    failures = [Failure(test_id=test_id, message=r.message) for test_id, r in report.failed.items()]
    base.update(counts=report.counts(), failures=failures)
    if not report.tests:
        return PassResult(**base, ok=False, reason="zero tests collected"), report
    if run.exit_code != 0:
        reason = f"test command exited {run.exit_code}"
        if failures:
            reason += f"; {len(failures)} failing: " + ", ".join(f.test_id for f in failures[:10])
        return PassResult(**base, ok=False, reason=reason), report
    if failures:
        return PassResult(**base, ok=False, reason="exit code 0 but the report lists failures"), report
    return PassResult(**base, ok=True), report


def split_report(output: str, markers: tuple[str, str]) -> tuple[str, str | None]:
    """The test output without the report, and the report printed between this run's markers."""
    begin = output.rfind(markers[0] + "\n")
    if begin < 0:
        return output, None
    end = output.find("\n" + markers[1], begin)
    if end < 0:
        return output[:begin], None
    return output[:begin], output[begin + len(markers[0]) + 1 : end]


def compare_to_baseline(baseline: dict[str, str], outcomes: dict[str, str]) -> list[str]:
    """Problems: base tests gone from the candidate, or passing on base but not in the candidate."""
    problems = []
    for test_id, before in sorted(baseline.items()):
        after = outcomes.get(test_id)
        if after is None:
            problems.append(f"{test_id} is missing")
        elif before == "passed" and after != "passed":
            problems.append(f"{test_id} passed on main but is {after}")
    return problems


def _fail(result: GateResult, reason: str) -> GateResult:
    result.passed = False
    result.needs_approval = False
    result.reasons.append(reason)
    return result
