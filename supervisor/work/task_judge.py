"""The task verdict: a result commit judged by the project's own tests, in containers, from outside.

1. The *tests tree*: the task's base commit with the hidden test patch applied (through a private
   index; the agent never sees the patch). A patch that no longer applies is `infrastructure`.
2. The *judged tree*: the result's code with every test path and all test machinery taken from
   the tests tree, none from the result (the rule: `supervisor/work/task_tests.py`).
3. The project's test command runs, through the gate's own pass (`GateRunner.run_pass`: isolated
   Python, a trusted pytest ini, no plugin autoload, a JUnit report printed between markers made
   for that one run, a deadline the engine enforces), once on the tests tree (the base outcomes,
   cached per base commit and test patch) and once on the judged tree, each in a fresh container.
4. Verdict: `passed` when every FAIL_TO_PASS test passes and nothing that passed on the base fails;
   `failed` otherwise; `infrastructure` when the base's tests cannot run at all. An engine that
   stops answering raises `EngineUnavailableError`: no verdict, the caller judges again later.
5. The result's run must be consistent: its exit code is pytest's 0 (nothing failed) or 1 (something
   did) and agrees with the report, else the verdict is `failed` and flagged (`exit_mismatch`).
6. Review (`task_review.py`): a diff touching tests or machinery, a tamper-screen hit or a refused
   work-area entry sets `needs_review`; such a result is never delivered automatically.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from sandbox.engine import Engine
from sandbox.errors import EngineUnavailableError
from supervisor.base.git_ops import Git, GitError
from supervisor.gate.config import GateConfig, GateLimits
from supervisor.gate.junit import JUnitReport
from supervisor.gate.passes import GateRunner, GateSite, graft
from supervisor.store.gate_results import PassName, PassResult
from supervisor.store.projects import ProjectConfig
from supervisor.store.tasks.models import Task, TaskVerdict
from supervisor.work.task_review import review_reasons
from supervisor.work.task_snapshot import refusals_of
from supervisor.work.task_tests import (
    compute_outcomes,
    describe,
    is_pass,
    is_task_test_path,
    load_base_outcomes,
    patch_bytes,
    save_base_outcomes,
    settings_digest,
)

MAX_REASON = 20_000
# Both runs go on past a test module that fails to import: its tests count as failed, the rest run.
EXTRA_PYTEST_ARGS = ["--continue-on-collection-errors"]


class _Infrastructure(Exception):
    """The project's tests cannot run at all: never the agent's fault."""


class TaskJudge:
    """Judges task results of any project; one per supervisor, safe to reuse."""

    def __init__(
        self, engine: Engine, *, scratch: Path, instance: str, cache: Path, agent_image: Callable[[], str]
    ) -> None:
        self.engine = engine
        self.scratch = scratch
        self.instance = instance
        self.cache = cache
        self.agent_image = agent_image

    def judge(self, mirror: Path, project: ProjectConfig, task: Task, result_commit: str) -> TaskVerdict:
        """The verdict on `result_commit` (on `task.base_commit`, in the project's `mirror`)."""
        started = time.monotonic()
        verdict = TaskVerdict(
            outcome="infrastructure", reason="", base_commit=task.base_commit, result_commit=result_commit
        )
        try:
            self._judge(Git(mirror), project, task, verdict)
        except _Infrastructure as exc:
            verdict.outcome, verdict.reason = "infrastructure", str(exc)[:MAX_REASON]
        verdict.test_time_s = round(verdict.test_time_s, 3)
        verdict.duration_s = round(time.monotonic() - started, 3)
        return verdict

    def _judge(self, git: Git, project: ProjectConfig, task: Task, verdict: TaskVerdict) -> None:
        base, result = task.base_commit, verdict.result_commit or ""
        if git.rev_parse(base) != base:
            raise _Infrastructure(f"base commit {base[:12]} is not in the project's mirror; fetch the project")
        if git.rev_parse(result) != result:
            raise _Infrastructure(f"result commit {result[:12]} is not in the project's mirror")
        runner = GateRunner(git, self.engine, GateSite(self.scratch, self.scratch, self.instance))
        config = self._config(project)
        tests = tests_tree(git, base, task.test_patch, self.scratch)
        patch_paths = frozenset(path for _, path in git.changed_paths(git.tree_of(base), tests))
        verdict.refused = refusals_of(git, result)
        verdict.review_reasons = review_reasons(git, base, result, patch_paths, verdict.refused)
        verdict.needs_review = bool(verdict.review_reasons)
        before = self._base_outcomes(runner, config, task, tests, verdict)
        judged = graft(git, self.scratch, result, tests, lambda path: is_task_test_path(path, patch_paths))
        escaping = git.escaping_links(judged)
        if escaping:
            verdict.outcome = "failed"
            verdict.reason = ("symlinks resolve outside the tree: " + "; ".join(escaping[:20]))[:MAX_REASON]
            return
        run, report = self._run(runner, judged, config, "candidate", verdict)
        after = _outcomes(report)
        verdict.tests = compute_outcomes(before, after, task.fail_to_pass, task.pass_to_pass)
        if run.timed_out or not after:
            verdict.outcome = "failed"
            why = run.reason or "no test ran on the result"
            verdict.reason = f"the tests could not run on the result: {why}"[:MAX_REASON]
            return
        mismatch = exit_mismatch(run, report)
        if mismatch:  # the report is not the one pytest wrote, or the run was cut short: never a pass
            verdict.outcome, verdict.reason = "failed", mismatch[:MAX_REASON]
            verdict.review_reasons.append(mismatch)
            verdict.needs_review = True
            return
        verdict.outcome = "passed" if is_pass(verdict.tests) else "failed"
        verdict.reason = describe(verdict.tests)[:MAX_REASON]

    def _config(self, project: ProjectConfig) -> GateConfig:
        """The gate's config for this project's runs (image resolved now: None means the agent image)."""
        try:
            image = project.image or self.agent_image()
        except EngineUnavailableError:
            raise
        except Exception as exc:  # no image, or none can be built: never the agent's fault
            raise _Infrastructure(f"no image to run the project's tests in: {exc}") from exc
        try:
            return GateConfig(
                command=[*project.test_command, *EXTRA_PYTEST_ARGS],
                deadline_s=project.test_deadline_s,
                limits=GateLimits(**project.limits.model_dump()),
                image=image,
                memory_paths=[],
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise _Infrastructure(f"the project's test settings cannot be run ({where}: {first['msg']})") from exc

    def _base_outcomes(
        self, runner: GateRunner, config: GateConfig, task: Task, tests: str, verdict: TaskVerdict
    ) -> dict[str, str]:
        """The base's outcomes with the test patch: from the cache, else run once and cached."""
        settings = settings_digest(config.command, config.image or "")
        cached = load_base_outcomes(self.cache, task.base_commit, task.test_patch, settings)
        if cached is not None:
            return cached
        run, report = self._run(runner, tests, config, "baseline", verdict)
        if run.timed_out:
            raise _Infrastructure(f"the project's tests cannot run on the base: {run.reason}")
        if report is None or not report.tests:
            why = run.reason or "no test report"
            raise _Infrastructure(f"the project's tests cannot run on the base ({why}); fix the test command or image")
        outcomes = {test_id: result.outcome for test_id, result in report.tests.items()}
        save_base_outcomes(self.cache, task.base_commit, task.test_patch, settings, outcomes)
        return _outcomes(report)

    def _run(
        self, runner: GateRunner, tree: str, config: GateConfig, name: PassName, verdict: TaskVerdict
    ) -> tuple[PassResult, JUnitReport | None]:
        try:
            run, report = runner.run_pass(tree, config, name)
        except GitError as exc:  # the tree cannot be laid out for the container (checked before for results)
            raise _Infrastructure(f"the tree to test could not be exported: {exc}") from exc
        verdict.test_time_s += run.duration_s
        if run.infrastructure:
            if not self.engine.ping():
                raise EngineUnavailableError(f"the container engine stopped answering while judging ({run.reason})")
            raise _Infrastructure(f"the container engine could not run the tests: {run.reason}")
        return run, report


def tests_tree(git: Git, base: str, test_patch: str, scratch: Path) -> str:
    """The base's tree with the hidden test patch applied (no work tree: a private index only)."""
    if not test_patch:
        return git.tree_of(base)
    scratch.mkdir(parents=True, exist_ok=True)
    index = scratch / f"tests-index-{base[:12]}-{time.monotonic_ns()}"
    try:
        git.run("read-tree", base, index_file=index)
        done = git.run(
            "apply",
            "--cached",
            "--whitespace=nowarn",
            "-",
            input=patch_bytes(test_patch),
            index_file=index,
            check=False,
        )
        if done.returncode != 0:
            message = done.stderr.decode(errors="replace").strip()[:2000]
            raise _Infrastructure(
                f"the task's test patch no longer applies to base {base[:12]} ({message}); "
                "fix or replace the test patch (not the agent's fault)"
            )
        return git.out("write-tree", index_file=index)
    except GitError as exc:
        raise _Infrastructure(f"the task's test patch could not be applied: {exc}") from exc
    finally:
        index.unlink(missing_ok=True)


def exit_mismatch(run: PassResult, report: JUnitReport | None) -> str | None:
    """Why the run's exit code and its report cannot both be pytest's own, or None when they agree.

    pytest exits 0 when nothing failed and 1 when something did (collection errors included: the judge
    passes `--continue-on-collection-errors`). Any other code (killed, interrupted, internal error), or
    a code that contradicts the report, means the report printed was not the run's honest account:
    the code under test printed its own and ended the wrapper, or rewrote the file after pytest wrote it.
    """
    failing = len(report.failed) if report else 0
    if run.exit_code == (1 if failing else 0):
        return None
    return (
        f"the test run's exit code {run.exit_code} disagrees with its report ({failing} failing tests): "
        "the run ended abnormally or its report was rewritten"
    )


def _outcomes(report: JUnitReport | None) -> dict[str, str]:
    return {test_id: result.outcome for test_id, result in report.tests.items()} if report else {}
