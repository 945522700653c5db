"""Review: a full acceptance work area is never an escape hatch for the candidate.

The folders acceptance lays out lie in the gatekeeper's size-capped worktree area, which only the
candidate fills during its gate (its scenario agents run two at a time and share the area). When a
scenario's own set-up meets that full area, the result must be a verdict (fail closed), never an
exception out of the stage (the gatekeeper turns an escaping ENOSPC into "disk full, gating paused",
then gates the same candidate again, forever) nor an "infrastructure" excuse that turns the
rejection into a retry and an infrastructure-error. A full *host* disk is still weather: the
gatekeeper checks that itself (statvfs of its state folder) before it records any failed gate.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from sandbox.fake import FakeEngine
from supervisor.gate.acceptance.library import default_scenarios
from supervisor.gate.acceptance.models import AcceptanceReport, ScenarioOutcome
from supervisor.gate.acceptance.scenario_run import RunPlan, run_scenario
from supervisor.loop import diskcap

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a real full filesystem needs a loop mount (root)")


def _fill(folder: Path) -> None:
    """Write until the filesystem says no, as the candidate's other scenario agent does."""
    with open(folder / "ballast.bin", "wb") as handle:
        try:
            while True:
                handle.write(b"x" * (1 << 20))
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    # Whatever small room fsync left: fill it with empty folders until mkdir itself fails.
    for n in range(100_000):
        try:
            (folder / f"d{n}").mkdir()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
            return


def test_a_scenario_that_starts_in_a_full_work_area_gets_a_verdict_not_an_escaping_error_or_an_excuse(tmp_path):
    area = diskcap.CappedArea("workspace", tmp_path / "worktrees", 16)
    assert diskcap.cap_areas([area], tmp_path / "disk", "loop")
    try:
        stage_folder = area.directory / "acceptance-0123456789ab"  # as run_stage lays it out
        stage_folder.mkdir()
        code = tmp_path / "code"  # exported before any scenario ran; never reached here
        code.mkdir()
        _fill(area.directory)
        plan = RunPlan(engine=FakeEngine(), image="never-used", instance="review", code=code, scratch=stage_folder)
        scenario = next(s for s in default_scenarios() if s.name == "word-count")
        result = run_scenario(plan, scenario)  # must not raise: an escaping ENOSPC stalls the gate forever
    finally:
        diskcap.release([area])
    assert result.outcome is ScenarioOutcome.ERROR, result
    report = AcceptanceReport(commit="c" * 40, outcome=ScenarioOutcome.ERROR, scenarios=[result])
    # Only the candidate writes in the capped area during its gate: no excuse, a rejection.
    assert not report.engine_failed(), result
