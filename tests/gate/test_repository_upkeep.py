"""Repository upkeep: loose refs and objects are packed at every maintenance, at a cost that does
not grow with the lineage (geometric repacks), and a full gc runs at most once a day."""

from __future__ import annotations

import time

from supervisor.base.git_ops import Git
from supervisor.gate import upkeep
from supervisor.gate.gatekeeper import Gatekeeper


def _loose_objects(g: Git, n: int, tag: str) -> None:
    """`n` commits on a ref of their own, each with a new file: reachable, loose objects."""
    parent = g.ref_value("refs/heads/main")
    for i in range(n):
        blob = g.out("hash-object", "-w", "--stdin", input=f"{tag} {i}\n".encode())
        tree = g.out("mktree", input=f"100644 blob {blob}\tfile.txt\n".encode())
        parent = g.commit_tree(tree, [parent] if parent else [], f"{tag} {i}")
    g.run("update-ref", f"refs/ouroboros/rejected/{tag}", parent)


def _counts(g: Git) -> dict[str, int]:
    return {
        key: int(value)
        for key, value in (line.split(": ", 1) for line in g.out("count-objects", "-v").splitlines())
        if value.isdigit()
    }


def test_maintenance_packs_loose_objects_and_runs_a_full_gc_once_a_day(
    offline_gatekeeper: Gatekeeper, monkeypatch
) -> None:
    g = offline_gatekeeper.git
    runs: list[str] = []
    real_run = Git.run

    def recording(self: Git, *args: str, **kwargs):  # type: ignore[no-untyped-def]
        runs.append(args[0])
        return real_run(self, *args, **kwargs)

    monkeypatch.setattr(Git, "run", recording)
    stamp = offline_gatekeeper.state_dir / "git-gc"

    _loose_objects(g, 10, "first")
    offline_gatekeeper.maintain()
    assert "gc" in runs and stamp.exists()  # never run before: a full gc now
    assert _counts(g)["count"] == 0

    runs.clear()
    _loose_objects(g, 10, "second")
    offline_gatekeeper.maintain()
    assert "gc" not in runs and "repack" in runs  # the same day: only a geometric repack
    assert _counts(g)["count"] == 0  # and it packed the new loose objects all the same

    runs.clear()
    stamp.write_text(f"{time.time() - upkeep.FULL_GC_EVERY_S - 1}\n")
    offline_gatekeeper.maintain()
    assert "gc" in runs  # a day later: due again

    for unusable in (f"{time.time() + 3600}\n", "torn"):  # from the future (clock set back), or torn
        runs.clear()
        stamp.write_text(unusable)
        offline_gatekeeper.maintain()
        assert "gc" in runs


def test_an_unreachable_object_ages_across_the_repacks_between_full_gcs(
    offline_gatekeeper: Gatekeeper, monkeypatch
) -> None:
    """The geometric repack rolls loose objects, unreachable ones too, into a fresh pack; a full gc that
    then set them loose again with that pack's time restarted their grace every day: never pruned."""
    import os

    g = offline_gatekeeper.git
    blob = g.out("hash-object", "-w", "--stdin", input=b"dropped long ago\n")  # unreachable
    loose = g.git_dir / "objects" / blob[:2] / blob[2:]
    ten_days_ago = time.time() - 10 * 86_400
    os.utime(loose, (ten_days_ago, ten_days_ago))
    stamp = offline_gatekeeper.state_dir / "git-gc"
    offline_gatekeeper.maintain()  # a full gc: ten days is within its grace, the object stays
    assert g.run("cat-file", "-e", blob, check=False).returncode == 0
    offline_gatekeeper.maintain()  # the same day: a geometric repack
    stamp.write_text(f"{time.time() - upkeep.FULL_GC_EVERY_S - 1}\n")
    monkeypatch.setattr(upkeep, "PRUNE_AFTER", "1.week.ago")  # as if four more days had passed
    offline_gatekeeper.maintain()
    assert g.run("cat-file", "-e", blob, check=False).returncode != 0


def test_a_stamp_that_cannot_be_written_only_repeats_the_gc(offline_gatekeeper: Gatekeeper) -> None:
    stamp = offline_gatekeeper.state_dir / "git-gc"
    stamp.mkdir()  # writing the stamp fails (as on a full disk or a read-only file)
    offline_gatekeeper.maintain()
    offline_gatekeeper.maintain()
    assert stamp.is_dir()
