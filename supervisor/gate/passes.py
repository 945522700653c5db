"""The container test gate: judge one commit against its base, failing closed on anything unclear.

A verdict is built from data the supervisor produced itself: the diff it computed between two
commits, the exit code the engine saw, and a JUnit report read back from a directory that only
that one container could write. Order of checks (cheapest first, see docs/gate.md):

1. a symlink that resolves outside the tree (alone or through a chain) → reject, no test runs;
2. protected paths touched → reject, no test runs;
3. pass "main-tests": the base's test folders (and the base's test machinery anywhere: conftests,
   pytest ini files, `*.pth`, `*.dist-info`, test modules) grafted onto the candidate's code, with
   none of the candidate's test files present; every test that passed on the base must pass;
4. pass "candidate": the candidate's own suite on its code (skipped when the grafted tree is the
   candidate's tree: pass 3 then ran exactly it); must exit 0, collect tests and agree with its
   report, and every test id of the base must still exist and pass (the suite becomes main's);
5. changed existing tests, an added conftest, or a diff touching pytest/Python machinery
   (supervisor/gate/tamper.py) → the verdict needs approval.

pytest never reads configuration from the judged tree: Python starts isolated (`-I`: no cwd on
sys.path, no PYTHON* variables, no user site), pytest gets a trusted ini (`-c`), `--rootdir`,
`--confcutdir`, no plugin autoloading and only the plugins the base's gate.toml names.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox import ContainerSpec, Limits, Mount, RunResult
from sandbox.engine import Engine
from supervisor.base.git_ops import Git, TreeEntry
from supervisor.gate.acceptance.stage import StageTools, accept
from supervisor.gate.config import GateConfig, is_test_machinery, protected_hits
from supervisor.gate.junit import MAX_REPORT_BYTES, JUnitReport, MalformedReportError, parse_report
from supervisor.gate.on_demand import build_agent_image
from supervisor.gate.tamper import tamper_hits
from supervisor.store.gate_results import Failure, GateResult, PassName, PassResult

SRC_DIR = "/src"
TRUSTED_DIR = "/ouroboros-gate"  # the gate's own pytest.ini, mounted read-only beside the tree
REPORT_PATH = "/tmp/ouroboros-junit.xml"  # on the container's size-capped tmpfs
LOG_TAIL_CHARS = 4000
OUTPUT_CAP = 2 * MAX_REPORT_BYTES + 2_000_000  # the report travels in the tail half of the output

# Runs the test command, then prints the report between per-run markers: the container needs no
# writable host folder at all, so it cannot fill the host's disk or plant links for us to follow.
WRAPPER = 'rc=0; "$@" || rc=$?; echo; echo "$OUROBOROS_BEGIN"; cat {report}; echo; echo "$OUROBOROS_END"; exit $rc'

BaselineLoader = Callable[[str, "GateConfig"], "dict[str, str] | None"]


@dataclass(frozen=True)
class GateSite:
    """Where one gatekeeper's passes lay out files, and the instance label its containers carry.

    `work_area` is where acceptance lays out the folders the candidate's agent writes in: the
    size-capped worktree area under a supervisor, so a candidate cannot fill the host's disk.
    """

    scratch: Path
    work_area: Path
    instance: str = "default"


class GateRunner:
    """Runs gate passes in fresh hardened containers through `sandbox`."""

    def __init__(self, git: Git, engine: Engine, site: GateSite, *, image: str | None = None) -> None:
        self.git = git
        self.engine = engine
        self.site = site
        self.scratch = site.scratch
        self.instance = site.instance
        self.image = image  # None: found or built on first use (`agent_image`)

    # -- the verdict ------------------------------------------------------------------------

    def judge(
        self, commit: str, base: str | None, config: GateConfig, baseline: BaselineLoader | None = None
    ) -> GateResult:
        """Gate `commit`; with a base, also protected paths, no-shrink and main's own tests.

        `baseline(base, config)` gives the base's test outcomes (e.g. from a cache); it is only
        called once the cheaper checks and the main-tests pass have succeeded.
        """
        started = time.monotonic()
        result = self._judge(commit, base, config, baseline or self.baseline)
        if result.passed:  # held-out acceptance: the candidate run for real, judged outside its process
            accept(
                result, config, StageTools(self.git, self.engine, self.agent_image, self.instance, self.site.work_area)
            )
        result.duration_s = round(time.monotonic() - started, 3)
        return result

    def _judge(self, commit: str, base: str | None, config: GateConfig, load_baseline: BaselineLoader) -> GateResult:
        result = GateResult(commit=commit, base=base, passed=False)
        escaping = self.git.escaping_links(commit)
        if escaping:
            return _fail(result, "symlinks resolve outside the tree: " + "; ".join(escaping[:20]))
        if base is None:
            return self._candidate_pass(result, commit, config, None)
        changes = self.git.changed_paths(base, commit)
        top_level = {entry.path.split("/", 1)[0] for entry in self.git.ls_tree(base)}
        result.protected = protected_hits([path for _, path in changes], config, top_level)
        if result.protected:
            return _fail(result, f"touches protected paths: {', '.join(result.protected)}")
        grafted = self.graft_tests(commit, base, config)
        baseline = self._run_main_tests(result, grafted, base, config, load_baseline)
        if baseline is None:
            return result
        if grafted != self.git.tree_of(commit):  # else the main-tests pass ran exactly the candidate's suite
            self._candidate_pass(result, commit, config, baseline)
            if not result.passed:
                return result
        self._needs_approval(result, commit, base, config, changes)
        return result

    def _run_main_tests(
        self, result: GateResult, grafted: str, base: str, config: GateConfig, load_baseline: BaselineLoader
    ) -> dict[str, str] | None:
        """Pass "main-tests": main's own tests, alone, against the candidate's code."""
        main_pass, report = self.run_pass(grafted, config, "main-tests")
        result.passes.append(main_pass)
        result.failures += main_pass.failures
        if not main_pass.ok:
            _fail(result, f"main's own tests fail against the candidate's code: {main_pass.reason}")
            return None
        baseline = load_baseline(base, config)
        if baseline is None:
            _fail(result, f"could not establish the tests of base {base[:12]}: its own gate run failed")
            return None
        outcomes: dict[str, str] = {test_id: r.outcome for test_id, r in report.tests.items()} if report else {}
        broken = compare_to_baseline(baseline, outcomes)
        if broken:
            _fail(result, "main's own tests do not all pass against the candidate: " + "; ".join(broken[:20]))
            return None
        result.passed, result.test_ids = True, outcomes
        return baseline

    def _candidate_pass(
        self, result: GateResult, commit: str, config: GateConfig, baseline: dict[str, str] | None
    ) -> GateResult:
        """Pass "candidate": the candidate's whole suite; with a baseline, it may not shrink or weaken."""
        first, report = self.run_pass(commit, config, "candidate")
        result.passes.append(first)
        result.failures += first.failures
        if report is not None:
            result.test_ids = {test_id: r.outcome for test_id, r in report.tests.items()}
        if not first.ok:
            return _fail(result, first.reason)
        shrink = compare_to_baseline(baseline, result.test_ids) if baseline is not None else []
        if shrink:
            return _fail(result, "the suite shrank or weakened: " + "; ".join(shrink[:20]))
        result.passed = True
        return result

    def _needs_approval(
        self, result: GateResult, commit: str, base: str, config: GateConfig, changes: list[tuple[str, str]]
    ) -> None:
        result.changed_tests = [
            path
            for status, path in changes
            if config.is_test_path(path) and (status != "A" or path.rsplit("/", 1)[-1] == "conftest.py")
        ]
        if result.changed_tests:
            result.needs_approval = True
            result.reasons.append("changes existing tests: " + ", ".join(result.changed_tests))
        result.tamper = tamper_hits(self.git, base, commit, changes)
        if result.tamper:
            result.needs_approval = True
            result.reasons.append(
                "touches pytest or Python start-up machinery (never accepted without "
                "approval): " + "; ".join(result.tamper[:20])
            )

    def baseline(self, base: str, config: GateConfig) -> dict[str, str] | None:
        """Test outcomes of the base, by running its own suite (callers cache the answer)."""
        base_pass, report = self.run_pass(base, config, "baseline")
        if report is None or not base_pass.ok:
            return None
        return {test_id: r.outcome for test_id, r in report.tests.items()}

    def graft_tests(self, commit: str, base: str, config: GateConfig) -> str:
        """A tree: the candidate's code with main's test folders and main's test machinery elsewhere.

        Nothing of the candidate's test files, conftests, pytest ini files, `*.pth`, `*.dist-info`
        or `sitecustomize.py` is present: main's tests run alone, as main has them.
        """

        def is_tests(path: str) -> bool:  # a test folder replaced by a file or link counts too
            return config.is_test_path(path) or config.is_test_path(path + "/") or is_test_machinery(path)

        return graft(self.git, self.scratch, commit, base, is_tests)

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
                run = self.engine.run(spec, deadline_s=config.deadline_s, output_cap=OUTPUT_CAP)
            except Exception as exc:  # fail closed on any engine trouble
                return PassResult(name=name, ok=False, reason=f"container error: {exc}", infrastructure=True), None
            return _evaluate(name, run, markers, config)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _spec(self, run_id: str, src: Path, config: GateConfig, markers: tuple[str, str]) -> ContainerSpec:
        wrapped = ["sh", "-c", WRAPPER.format(report=REPORT_PATH), "gate", *pytest_command(config)]
        limits = config.limits
        trusted = src.parent / "trusted"
        trusted.mkdir(exist_ok=True)
        (trusted / "pytest.ini").write_text(trusted_ini(config))
        mounts = [Mount(source=src, target=SRC_DIR), Mount(source=trusted, target=TRUSTED_DIR)]
        return ContainerSpec(
            image=config.image or self.agent_image(),
            command=wrapped,
            run_id=run_id,
            role="gate",
            instance=self.instance,
            workdir=SRC_DIR,
            mounts=mounts,
            env={
                **config.env,
                "HOME": "/tmp",
                "PYTHONDONTWRITEBYTECODE": "1",
                "CI": "true",
                "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
                "OUROBOROS_BEGIN": markers[0],
                "OUROBOROS_END": markers[1],
            },
            limits=Limits(
                memory_mb=limits.memory_mb,
                cpus=limits.cpus,
                pids=limits.pids,
                tmpfs_mb=limits.tmpfs_mb,
                log_max_mb=max(5, OUTPUT_CAP // 1_000_000 + 1),
            ),
        )

    def agent_image(self, progress: Callable[[str], None] | None = None) -> str:
        """The image passes run in: the one given, else found or built the first time it is needed."""
        if self.image is None:
            self.image = build_agent_image(self.engine, progress or _silent)
        return self.image


def _silent(_message: str) -> None:
    return None


def graft(git: Git, scratch: Path, code: str, tests: str, is_tests: Callable[[str], bool]) -> str:
    """A tree: `code`'s entries that are not tests, and `tests`' entries that are.

    The tests' entries are written last, so where a code entry clashes with them (a file where the
    tests need a folder, a folder where they have a file) git drops the code's: the tests' layout wins.
    """
    keep = [e for e in git.ls_tree(code) if not is_tests(e.path)]
    test_entries = [e for e in git.ls_tree(tests) if is_tests(e.path)]
    entries = [TreeEntry(e.mode, e.kind, e.sha, e.path) for e in keep + test_entries]
    scratch.mkdir(parents=True, exist_ok=True)
    return git.tree_from_entries(entries, scratch)


def pytest_command(config: GateConfig) -> list[str]:
    """The configured pytest command, started so that nothing in the judged tree configures it.

    `-I`: no cwd or script folder on sys.path, no PYTHON* variables, no user site, so no
    `sitecustomize.py`, `*.pth`, `*.dist-info` or shadowing module of the tree is seen at start-up.
    `-c`: the gate's own ini (so no pytest.ini/pytest.toml/.pytest.ini/pyproject.toml/tox.ini/setup.cfg
    of the tree is read); plugins are only the ones named here (autoload is off in the environment).
    The tree becomes importable through the trusted ini's `pythonpath`, after those plugins loaded.
    """
    trusted = [
        "-c",
        f"{TRUSTED_DIR}/pytest.ini",
        f"--rootdir={SRC_DIR}",
        f"--confcutdir={SRC_DIR}",
        "-p",
        "no:cacheprovider",
    ]
    for plugin in config.plugins:
        trusted += ["-p", plugin]
    return [
        config.command[0],
        "-I",
        "-B",
        "-m",
        "pytest",
        *trusted,
        *config.command[3:],
        config.junit_option.format(path=REPORT_PATH),
    ]


def trusted_ini(config: GateConfig) -> str:
    """The only pytest configuration the gate's pytest reads, from the base's gate.toml."""
    lines = ["[pytest]"]
    for key, value in {"pythonpath": SRC_DIR, **config.pytest_ini}.items():
        if isinstance(value, str):
            lines.append(f"{key} = {value}")
        else:
            lines += [f"{key} ="] + [f"    {item}" for item in value]
    return "\n".join(lines) + "\n"


def _evaluate(
    name: PassName, run: RunResult, markers: tuple[str, str], config: GateConfig
) -> tuple[PassResult, JUnitReport | None]:
    output, report_text = split_report(run.output, markers)
    base: dict[str, Any] = dict(  # the fields every PassResult of this run has
        name=name,
        exit_code=run.exit_code,
        timed_out=run.timed_out,
        duration_s=round(run.duration_s, 3),
        log_tail=output[-LOG_TAIL_CHARS:],
    )
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
