"""status.json round-trips through its model; unchanged status is not rewritten."""

from supervisor.store.status_file import Status, StatusFile
from supervisor.store.verdicts import VerdictSummary


def test_status_round_trips_and_is_written_only_on_change(tmp_path):
    path = tmp_path / "status.json"
    status_file = StatusFile(path)
    status = Status(
        state="running",
        generation=3,
        commit="a" * 40,
        verdicts=[VerdictSummary(candidate="3-1", state="rejected", reasons=["1 failing"])],
    )
    status_file.write(status)
    first = path.stat().st_mtime_ns
    assert status_file.read() == status
    path.touch()  # proves the next write below does not happen (it would restore the old content)
    path.write_text(path.read_text())
    touched = path.stat().st_mtime_ns
    status_file.write(status)
    assert path.stat().st_mtime_ns == touched and touched >= first
    status.state = "idle"
    status_file.write(status)
    assert status_file.read().state == "idle"


def test_a_missing_or_foreign_status_file_reads_as_none(tmp_path):
    assert StatusFile(tmp_path / "none.json").read() is None
    (tmp_path / "bad.json").write_text('{"state": "running", "surprise": 1}')
    assert StatusFile(tmp_path / "bad.json").read() is None
