"""Bounded growth (issue 9): a supervisor that decides verdict after verdict keeps no per-verdict state.

The real loop on the fake engine, with an agent that proposes at once every run (rewriting one file,
so the tree stays the same size). Between verdict WARM and verdict WARM + MEASURED, after a full
collection each time, the number of live memory blocks of the Python allocator
(`sys.getallocatedblocks()`), of live gc-tracked objects, and of live objects of the supervisor's
and the sandbox's own types must not grow beyond small fixed bounds. An invariant, not a timing:
bench/soak.py measures the same over thousands of verdicts, with RSS.

Where the bounds come from (measured here): with no leak, blocks grow by about 250 over these 100
verdicts (caches of the interpreter and pydantic-core still filling up, flat after ~500 verdicts)
and objects by 3; with the leak this test was written for (pydantic-core's JSON string cache holding
every record's unique ids, hashes and times, ~5 blocks a verdict) blocks grew by about 730.
"""

from __future__ import annotations

import gc
import sys
import uuid
from collections import Counter
from pathlib import Path

from sandbox.fake import FakeContainer, FakeEngine
from supervisor.loop.event_loop import Supervisor
from tests.supervisor.fakes import fake_instance, write_proposal

WARM = 100  # verdicts before the first measure
MEASURED = 100  # verdicts between the two measures
MAX_BLOCK_GROWTH = 450  # over MEASURED verdicts
MAX_OBJECT_GROWTH = 30
MAX_OWN_OBJECT_GROWTH = 3  # live objects of supervisor/sandbox types


def busy_agent(container: FakeContainer) -> int:
    workspace = Path(container.mount("/workspace"))
    (workspace / "agent" / "soak_note.txt").write_text(uuid.uuid4().hex + "\n")
    write_proposal(Path(container.mount("/ouroboros/outbox")))
    container.stopped.wait()
    return 137


def own_objects() -> Counter[str]:
    """Live gc-tracked objects whose type is defined in `supervisor` or `sandbox`, by type."""
    found: Counter[str] = Counter()
    for obj in gc.get_objects():
        module = vars(type(obj)).get("__module__")  # a str for classes written in Python
        if isinstance(module, str) and module.split(".")[0] in ("supervisor", "sandbox"):
            found[f"{module}.{type(obj).__qualname__}"] += 1
    return found


def test_memory_does_not_grow_from_verdict_to_verdict(tmp_path):
    engine = FakeEngine(agent=busy_agent)
    instance = fake_instance(tmp_path / "home", engine)
    measures: dict[int, tuple[int, int, Counter[str]]] = {}
    last = WARM + MEASURED

    def measure(supervisor: Supervisor) -> bool:
        count = supervisor.verdict_count
        if count in (WARM, last) and count not in measures:
            gc.collect()
            measures[count] = (sys.getallocatedblocks(), len(gc.get_objects()), own_objects())
        return count >= last

    assert Supervisor(instance, engine, "fake-image", stop_when=measure).run() == 0
    assert set(measures) == {WARM, last}
    (blocks_before, objects_before, own_before), (blocks_after, objects_after, own_after) = (
        measures[WARM],
        measures[last],
    )
    grown = dict(own_after - own_before)
    assert sum(grown.values()) <= MAX_OWN_OBJECT_GROWTH, f"objects kept per verdict: {grown}"
    assert objects_after - objects_before <= MAX_OBJECT_GROWTH
    growth = blocks_after - blocks_before
    assert growth <= MAX_BLOCK_GROWTH, (
        f"{growth} more memory blocks live after {MEASURED} more verdicts ({growth / MEASURED:.1f} a verdict)"
    )


def test_freed_memory_goes_back_to_the_kernel():
    """release_free_memory hands glibc's free heap pages back: RSS falls after a large free."""
    import ctypes

    from supervisor.base import heap_trim

    def rss_kb() -> int:
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(4096) for _ in range(20_000)]  # ~80 MB of small blocks: the heap, not mmap
    for block in blocks:
        ctypes.memset(block, 1, 4096)
    keep = blocks[-1]  # one block in use at the top: the heap cannot simply shrink from its end
    for block in blocks[:-1]:
        libc.free(block)
    before = rss_kb()
    heap_trim.release_free_memory()
    after = rss_kb()
    libc.free(keep)
    assert before - after > 40_000, (before, after)
