"""A clock set back (a stamp written while it ran ahead) must not stop the periodic gc until the
clock catches up again: for the trusted repository (retention.gc) and the agent's history mirror
(lineage_view._compact), where unreachable objects would pile up meanwhile. Real git repos."""

from __future__ import annotations

import time

from supervisor.base.git_ops import Git
from supervisor.gate import retention
from supervisor.gate.config import RetentionPolicy
from supervisor.loop import lineage_view
from supervisor.store.instance_init import init_instance
from tests.console.test_lineage_mirror import grow

YEAR_S = 365 * 86_400


def test_the_trusted_gc_runs_when_its_stamp_is_from_the_future(tmp_path):
    instance = init_instance(tmp_path / "home")
    state = tmp_path / "state"
    state.mkdir()
    now = time.time()
    (state / retention.LAST_GC_FILE).write_text(str(now + YEAR_S))  # written while the clock ran a year ahead
    policy = RetentionPolicy()
    assert retention.gc(Git(instance.repo), policy, state, now)
    assert not retention.gc(Git(instance.repo), policy, state, now + 1)  # and then at its usual pace


def test_the_mirrors_full_gc_runs_when_its_stamp_is_from_the_future(tmp_path):
    instance = init_instance(tmp_path / "home")
    instance.state.mkdir(parents=True, exist_ok=True)
    git = Git(instance.repo)
    stamp = instance.run_dir / "history-gc"
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(f"{time.time() + YEAR_S}\n")
    number = 0
    for number in range(1, lineage_view.COMPACT_AFTER + 3):  # one pack per build: enough to compact
        grow(git, number)
        lineage_view.build(instance)
    assert float(stamp.read_text()) <= time.time()  # the full gc ran and wrote a true stamp
