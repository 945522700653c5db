"""Pure logic: the hash-chained decision log, path patterns, the JUnit reader, the proposal model."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pydantic
import pytest

from supervisor.gate.config import GateConfig, matches, parse_config, protected_hits
from supervisor.gate.junit import MalformedReportError, parse_report
from supervisor.gate.passes import compare_to_baseline
from supervisor.store.decision_log import DecisionLog
from supervisor.store.protocol import ProtocolError, parse_proposal


def _log(tmp_path: Path, count: int = 4) -> DecisionLog:
    log = DecisionLog(tmp_path / "decisions.jsonl")
    for i in range(count):
        log.append("accepted", candidate=f"{i}-1", commit="a" * 40, reasons=[f"r{i}"])
    return log


def test_chain_verifies_and_links(tmp_path: Path) -> None:
    log = _log(tmp_path)
    records = list(log.records())
    assert [r.seq for r in records] == [1, 2, 3, 4]
    assert all(later.prev == earlier.hash for earlier, later in zip(records, records[1:], strict=False))
    assert log.verify().ok and log.verify().records == 4


@pytest.mark.parametrize("tamper", ["edit", "delete", "swap", "truncate-hash"])
def test_tampering_reports_the_first_broken_line(tmp_path: Path, tamper: str) -> None:
    log = _log(tmp_path)
    lines = log.path.read_text().splitlines()
    if tamper == "edit":
        record = json.loads(lines[1])
        record["reasons"] = ["nothing to see"]
        lines[1] = json.dumps(record)
    elif tamper == "delete":
        del lines[1]
    elif tamper == "swap":
        lines[1], lines[2] = lines[2], lines[1]
    else:
        record = json.loads(lines[1])
        record["hash"] = "0" * 64
        lines[1] = json.dumps(record)
    log.path.write_text("\n".join(lines) + "\n")
    result = log.verify()
    assert not result.ok and result.broken_line == 2


def test_concurrent_appends_keep_one_chain(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "decisions.jsonl")
    threads = [
        threading.Thread(target=lambda i=i: [log.append("rejected", candidate=f"{i}-{j}") for j in range(10)])
        for i in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert log.verify().ok and log.verify().records == 40


def test_patterns() -> None:
    assert matches("supervisor/x/y.py", "supervisor/**")
    assert matches("Dockerfile.agent", "Dockerfile*") and not matches("a/Dockerfile", "Dockerfile*")
    assert matches("a/b/pytest.ini", "**/pytest.ini") and matches("pytest.ini", "**/pytest.ini")
    assert not matches("agent/tests/test_x.py", "**/pytest.ini")
    assert not matches("supervisorx/a.py", "supervisor/**")


def test_protected_hits_include_conftest_above_tests_and_new_top_level() -> None:
    config = GateConfig()
    hits = protected_hits(
        ["agent/conftest.py", "agent/tests/conftest.py", "pytest.py", "agent/x.py"], config, {"agent", "README.md"}
    )
    assert hits == ["agent/conftest.py (protected: agent/conftest.py)", "pytest.py (new top-level entry)"]


def test_config_is_strict() -> None:
    with pytest.raises(pydantic.ValidationError):
        parse_config("[gate]\ncommand = ['pytest']\nunknown = 1\n", "gate.toml")
    with pytest.raises(pydantic.ValidationError):
        parse_config("[gate]\ntest_paths = ['../outside']\n", "gate.toml")
    assert parse_config("[gate]\ndeadline_s = 5\n", "gate.toml").deadline_s == 5


JUNIT = b"""<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="3">
<testcase classname="agent.tests.test_a" name="test_ok"/>
<testcase classname="agent.tests.test_a" name="test_bad"><failure message="assert 1 == 2">trace</failure></testcase>
<testcase classname="agent.tests.test_a" name="test_skip"><skipped message="later"/></testcase>
</testsuite></testsuites>"""


def test_junit_is_read_as_data() -> None:
    report = parse_report(JUNIT)
    assert report.counts() == {"passed": 1, "failed": 1, "skipped": 1}
    assert "assert 1 == 2" in report.failed["agent.tests.test_a::test_bad"].message


@pytest.mark.parametrize("data", [b"", b"<html/>", b"<testsuite>", b'<!DOCTYPE x [<!ENTITY a "b">]><testsuite/>'])
def test_malformed_reports_are_refused(data: bytes) -> None:
    with pytest.raises(MalformedReportError):
        parse_report(data)


def test_no_shrink_rule() -> None:
    base = {"t::a": "passed", "t::b": "passed", "t::c": "skipped"}
    assert compare_to_baseline(base, {**base, "t::d": "passed"}) == []
    assert compare_to_baseline(base, {"t::a": "passed", "t::c": "skipped"}) == ["t::b is missing"]
    assert compare_to_baseline(base, {**base, "t::b": "skipped"}) == ["t::b passed on main but is skipped"]


def test_proposal_protocol_is_strict() -> None:
    good = {
        "version": 1,
        "kind": "proposal",
        "id": "a" * 32,
        "why": "w",
        "summary": "s",
        "created_at": "2026-11-25T00:00:00Z",
    }
    assert parse_proposal(json.dumps(good).encode()).summary == "s"
    for bad in ({**good, "files": ["x"]}, {**good, "version": 2}, {**good, "summary": "a\nb"}):
        with pytest.raises(pydantic.ValidationError):
            parse_proposal(json.dumps(bad).encode())
    with pytest.raises(ProtocolError):
        parse_proposal(b"{" * 100_000)


def test_report_is_taken_from_between_this_runs_markers() -> None:
    from supervisor.gate.passes import split_report

    markers = ("==B-1==", "==E-1==")
    output = "collected 2 items\n==B-1==\n<fake/>\n==E-1==\nmore\n==B-1==\n<testsuite/>\n\n==E-1==\n"
    text, report = split_report(output, markers)
    assert report.strip() == "<testsuite/>" and text.endswith("more\n")
    assert split_report("no markers\n", markers) == ("no markers\n", None)
    assert split_report("x\n==B-1==\n<testsuite>cut off", markers)[1] is None


def test_gate_container_has_no_writable_host_mount(tmp_path: Path) -> None:
    from supervisor.gate.passes import GateRunner, GateSite

    src = tmp_path / "src"
    src.mkdir()
    spec = GateRunner(None, None, GateSite(tmp_path, tmp_path), image="img")._spec(
        "gate-x", src, GateConfig(), ("b", "e")
    )
    assert [(m.target, m.read_only) for m in spec.mounts] == [("/src", True), ("/ouroboros-gate", True)]
    assert spec.network is None and spec.role == "gate" and spec.env["HOME"] == "/tmp"
    assert spec.env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] == "1"


def test_pytest_starts_isolated_with_the_gates_own_config(tmp_path: Path) -> None:
    from supervisor.gate.passes import GateRunner, GateSite, trusted_ini

    config = GateConfig(pytest_ini={"markers": ["docker: needs docker"]}, plugins=["hypothesis.extra.pytestplugin"])
    src = tmp_path / "src"
    src.mkdir()
    command = (
        GateRunner(None, None, GateSite(tmp_path, tmp_path), image="img")
        ._spec("gate-x", src, config, ("b", "e"))
        .command
    )
    pytest = command[command.index("python") :]
    assert pytest[:9] == [
        "python",
        "-I",
        "-B",
        "-m",
        "pytest",
        "-c",
        "/ouroboros-gate/pytest.ini",
        "--rootdir=/src",
        "--confcutdir=/src",
    ]
    assert pytest[pytest.index("hypothesis.extra.pytestplugin") - 1] == "-p"
    assert (tmp_path / "trusted" / "pytest.ini").read_text() == trusted_ini(config)
    assert trusted_ini(config) == "[pytest]\npythonpath = /src\nmarkers =\n    docker: needs docker\n"


@pytest.mark.parametrize(
    "command", [["pytest"], ["sh", "-c", "pytest"], ["python", "-c", "print(1)"], ["python", "-m", "pytest_evil"]]
)
def test_the_test_command_must_be_python_m_pytest(command: list[str]) -> None:
    with pytest.raises(pydantic.ValidationError, match="python -m pytest"):
        GateConfig(command=command)
    with pytest.raises(pydantic.ValidationError):
        GateConfig(pytest_ini={"addopts": "-p x\n[other]"})
