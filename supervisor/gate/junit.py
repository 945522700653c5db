"""Reading a JUnit XML report back as data: test ids and outcomes, nothing else trusted from it."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from typing import Literal

from pydantic import BaseModel, ConfigDict

from supervisor.base.errors import OuroborosError

MAX_REPORT_BYTES = 8_000_000
MAX_MESSAGE_CHARS = 2000

Outcome = Literal["passed", "failed", "skipped"]


class MalformedReportError(OuroborosError, ValueError):
    """The report is missing, too big, or not a JUnit document."""


class TestResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Outcome
    message: str = ""


class JUnitReport(BaseModel):
    """Outcome of every test case, keyed by `classname::name` (pytest's xunit2 layout)."""

    model_config = ConfigDict(extra="forbid")

    tests: dict[str, TestResult]

    @property
    def failed(self) -> dict[str, TestResult]:
        return {test_id: result for test_id, result in self.tests.items() if result.outcome == "failed"}

    @property
    def passed_ids(self) -> set[str]:
        return {test_id for test_id, result in self.tests.items() if result.outcome == "passed"}

    def counts(self) -> dict[str, int]:
        counts = {"passed": 0, "failed": 0, "skipped": 0}
        for result in self.tests.values():
            counts[result.outcome] += 1
        return counts


def parse_report(data: bytes) -> JUnitReport:
    if len(data) > MAX_REPORT_BYTES:
        raise MalformedReportError(f"JUnit report is {len(data)} bytes, more than {MAX_REPORT_BYTES}")
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise MalformedReportError("JUnit report declares a DTD or entities; refused")
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise MalformedReportError(f"JUnit report is not well-formed XML ({exc})") from exc
    if root.tag not in ("testsuites", "testsuite"):
        raise MalformedReportError(f"JUnit report root is <{root.tag}>, expected <testsuites> or <testsuite>")
    tests: dict[str, TestResult] = {}
    for case in root.iter("testcase"):
        test_id = f"{case.get('classname', '')}::{case.get('name', '')}"
        result = _result_of(case)
        previous = tests.get(test_id)
        # pytest reports a failing teardown as a second entry: the worse outcome counts.
        if previous is None or previous.outcome != "failed":
            tests[test_id] = result
    return JUnitReport(tests=tests)


def _result_of(case: ElementTree.Element) -> TestResult:
    for tag in ("failure", "error"):
        node = case.find(tag)
        if node is not None:
            text = (node.get("message") or "") + "\n" + (node.text or "")
            return TestResult(outcome="failed", message=text.strip()[:MAX_MESSAGE_CHARS])
    node = case.find("skipped")
    if node is not None:
        return TestResult(outcome="skipped", message=(node.get("message") or "")[:MAX_MESSAGE_CHARS])
    return TestResult(outcome="passed")
