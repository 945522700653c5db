"""Soak: an agent proposing as fast as it can; does the supervisor slow down or grow?

The real supervisor loop (`Supervisor.run()`, in this process) with an agent that proposes at
once every run, so verdicts follow each other as fast as the supervisor can decide. At every
verdict the process's resident memory (VmRSS) is sampled; every TRACE_EVERY verdicts, after a full
garbage collection, so is the Python memory tracemalloc sees (traced from the start, one frame).
Reported:

- time per verdict (median), first vs last 100 verdicts (first vs last third with fewer than 300):
  verdict_time_ratio, target <= 1.1. The headline counts CPU time (the supervisor's own plus the
  git processes it runs), because on a shared machine wall time mostly measures the neighbours;
  the wall-clock ratio is printed on the line above it;
- growth per verdict after warm-up (the first half of the verdicts is warm-up), as a least-squares
  slope over the second half, for RSS (KB), the C allocator's bytes in use (glibc mallinfo2) and
  traced Python memory (bytes), target 0. RSS moves in steps of hundreds of KB as the allocator
  keeps or returns free memory, so consecutive samples are not independent: the slope is fitted
  to BATCHES batch means (the standard batch-means method) and its noise is three standard errors
  of that fit plus one memory page (4 KB, the unit RSS moves in) spread over the window. The last
  line reports the RSS slope as 0 when it is within that noise, as it is otherwise; the raw
  slopes and their noise are printed on the line before.

--engine docker (default): the real engine, real gate containers (a cheap gate), the agent in its
container. --engine fake: the fake engine, so only the supervisor's own work is timed.

Where the instance lives (--home-fs): by default, as root, on a journaled ext4 filesystem the bench
makes (a 4 GiB sparse image, loop-mounted), as an operator's server would have it; else in the
temporary folder. Why not just the temporary folder: on a machine whose root filesystem is ext4
*without* a journal (this project's CI machines), the kernel's inode allocator skips every inode
freed in the last 60 seconds (fs/ext4/ialloc.c, `recently_deleted`), so creating files gets slower
the more were deleted in the last minute, whoever deleted them. A plain loop that writes and
deletes a 500-file tree, with no supervisor code, slowed from 88 to 288 ms per pass there; on a
journaled ext4 image it stayed at 18 ms. `--home-fs tmp` measures on the temporary folder anyway.

--smaps (a diagnostic): at every verdict the resident memory is also split by kind of mapping
(read from /proc/self/smaps; see `MAPPING_KINDS`), and the slope of each kind after warm-up is
printed, so RSS growth can be pinned to the allocator or mapping it lives in.

--malloc-trim (a diagnostic): glibc's malloc_trim(0) after every verdict, which hands the free memory
of malloc's arenas back to the kernel; RSS growth that remains is not malloc's free memory.

Usage: .venv/bin/python bench/soak.py [--seconds 600] [--engine docker|fake] [--home-fs ext4|tmp]
       [--no-trace] [--smaps] [--malloc-trim]
"""

from __future__ import annotations

import argparse
import array
import ctypes
import gc
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandbox.fake import FakeContainer, FakeEngine  # noqa: E402
from supervisor.loop.event_loop import Supervisor  # noqa: E402
from tests.chaos.chaos_instance import chaos_instance  # noqa: E402
from tests.supervisor.fakes import fake_instance, write_proposal  # noqa: E402

# The docker variant of fake_agent: proposes at once, every run, rewriting one file.
SOAK_AGENT = r"""
import datetime, json, os, time, uuid
ws, out = os.environ["OUROBOROS_WORKSPACE"], os.environ["OUROBOROS_OUTBOX"]
pid = uuid.uuid4().hex
open(os.path.join(ws, "agent", "soak_note.txt"), "w").write(pid + "\n")
message = {"version": 1, "kind": "proposal", "id": pid, "why": "Soak.", "summary": "Soak " + pid[:8],
           "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat()}
open(os.path.join(out, pid + ".json.tmp"), "w").write(json.dumps(message))
os.rename(os.path.join(out, pid + ".json.tmp"), os.path.join(out, pid + ".json"))
while True:
    time.sleep(1)
"""


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fake_agent(container: FakeContainer) -> int:
    workspace = Path(container.mount("/workspace"))
    # One file rewritten each time: the tree stays the same size, so a slowdown would be the
    # supervisor's (a tree that grows makes every snapshot, export and checkout grow with it).
    (workspace / "agent" / "soak_note.txt").write_text(uuid.uuid4().hex + "\n")
    write_proposal(Path(container.mount("/ouroboros/outbox")))
    container.stopped.wait()
    return 137


IMAGE_SIZE = "4G"


@contextmanager
def home_folder(kind: str) -> Iterator[Path]:
    """A fresh folder for the instance: on a journaled ext4 image the bench mounts (`ext4`) or in
    the temporary folder (`tmp`). See the module's docstring for why."""
    scratch = Path(tempfile.mkdtemp(prefix="ouroboros-soak-"))
    if kind == "tmp":
        yield scratch
        shutil.rmtree(scratch, ignore_errors=True)
        return
    image, mounted = scratch / "home.img", scratch / "fs"
    mounted.mkdir()
    try:
        subprocess.run(["truncate", "-s", IMAGE_SIZE, str(image)], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)  # mkfs's default: with a journal
        subprocess.run(["mount", "-o", "loop", str(image), str(mounted)], check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        raise SystemExit(f"cannot make the ext4 home ({exc}); run as root or pass --home-fs tmp") from None
    try:
        yield mounted
    finally:
        subprocess.run(["umount", "--lazy", str(mounted)], check=False)
        shutil.rmtree(scratch, ignore_errors=True)


def setup(engine_kind: str, folder: Path):
    home = folder / "home"
    if engine_kind == "fake":
        engine = FakeEngine(agent=fake_agent)
        # fake_instance turns held-out acceptance off: the fake engine runs no real agent to judge.
        return fake_instance(home, engine), engine, "fake-image"
    from sandbox.engine import DockerEngine
    from sandbox.images import ensure_agent_image

    engine = DockerEngine.connect()
    image = ensure_agent_image(engine)
    return chaos_instance(home, engine, image, agent=SOAK_AGENT), engine, image


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


TRACE_EVERY = 10  # verdicts between traced-memory samples (each costs a full garbage collection)
PAGE_KB = 4.0
BATCHES = 10


@dataclass
class Sample:
    verdict: int
    at: float
    rss_kb: int
    cpu: float
    malloc_kb: int


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mallinfo2() -> Callable[[], int]:
    """KB the C allocator has handed out and not taken back (glibc), or -1 where that cannot be read."""
    try:
        function = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return lambda: -1
    function.restype = _MallInfo2

    def in_use() -> int:
        info = function()
        return int(info.uordblks + info.hblkhd) // 1024

    return in_use


malloc_kb = _mallinfo2()


def _malloc_trim() -> Callable[[], None]:
    try:
        function = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        raise SystemExit("--malloc-trim needs glibc") from None
    function.argtypes = [ctypes.c_size_t]
    return lambda: function(0)


MAPPING_KINDS = ("heap", "thread_arenas", "thread_stacks", "other_anon", "files")
_THREAD_HEAP = 64 * 2**20  # glibc maps each thread arena's heap at a multiple of HEAP_MAX_SIZE (64 MiB)


def mapping_kinds_kb() -> tuple[int, ...]:
    """Resident KB per kind of mapping, in the order of MAPPING_KINDS (heuristics, for a diagnostic):

    heap: the main malloc arena (`[heap]`, brk); thread_arenas: anonymous read-write mappings at a
    multiple of 64 MiB (glibc's per-thread arenas); thread_stacks: anonymous read-write mappings
    right above a one-page no-access guard (glibc thread stacks) and the main `[stack]`;
    other_anon: every other anonymous mapping (Python's obmalloc arenas, malloc's mmapped blocks,
    libffi); files: mapped files (code, shared libraries, data files) and the kernel's pages."""
    totals = [0] * len(MAPPING_KINDS)
    kind, previous_end, previous_guard = 0, -1, False
    with open("/proc/self/smaps", encoding="ascii", errors="replace") as smaps:
        for line in smaps:
            head = line.split(maxsplit=6)
            if "-" in head[0] and len(head) >= 5 and ":" in head[3]:  # a mapping's first line
                start, end = (int(part, 16) for part in head[0].split("-"))
                name, perms = (head[5].strip() if len(head) > 5 else ""), head[1]
                guard_below = previous_guard and previous_end == start
                kind = _kind(name, perms, start, guard_below)
                previous_end, previous_guard = end, not name and perms.startswith("---") and end - start <= 65536
            elif head[0] == "Rss:":
                totals[kind] += int(head[1])
    return tuple(totals)


def _kind(name: str, perms: str, start: int, guard_below: bool) -> int:
    if name == "[heap]":
        return 0
    if name == "[stack]":
        return 2
    if name or not perms.startswith("rw"):
        return 4
    if start % _THREAD_HEAP == 0:
        return 1
    return 2 if guard_below else 3


class Recorder:
    """Samples written into arrays allocated once, before tracing starts: the bench itself must not
    grow per verdict, or it would measure its own list (a list of samples is ~0.3 KB a verdict)."""

    FIELDS = ("verdict", "at", "rss_kb", "cpu", "malloc_kb") + MAPPING_KINDS

    def __init__(self, capacity: int) -> None:
        self.capacity, self.count = capacity, 0
        self.data = {name: array.array("d", bytes(8 * capacity)) for name in self.FIELDS}

    def add(self, *values: float) -> None:
        for name, value in zip(self.FIELDS, values, strict=False):  # fields not given stay 0
            self.data[name][self.count] = value
        self.count += 1

    def samples(self) -> list[Sample]:
        columns = [self.data[name][: self.count] for name in self.FIELDS[:5]]
        return [Sample(int(v), at, int(rss), cpu, int(heap)) for v, at, rss, cpu, heap in zip(*columns, strict=True)]

    def column(self, name: str) -> list[float]:
        return list(self.data[name][: self.count])


def soak(
    seconds: float, engine_kind: str, trace: bool, folder: Path, smaps: bool = False, trim: bool = False
) -> tuple[list[Sample], list[tuple[int, int]], dict[str, list[float]]]:
    """Per-verdict samples, (verdict, traced bytes after a collection) every TRACE_EVERY verdicts,
    and with `smaps` the resident KB of each of MAPPING_KINDS at every verdict."""
    capacity = int(seconds * 50) + 1000  # far more verdicts than a second can hold
    recorder, traced = Recorder(capacity), Recorder(capacity // TRACE_EVERY + 10)
    if trace:
        tracemalloc.start(1)  # from the start: a bounded cache refilled later must not look like growth
    instance, engine, image = setup(engine_kind, folder)
    trim_now = _malloc_trim() if trim else lambda: None
    deadline = time.monotonic() + seconds
    last = [-1]

    def sample(supervisor: Supervisor) -> bool:
        count = supervisor.verdict_count
        full = recorder.count >= recorder.capacity or traced.count >= traced.capacity
        if last[0] == count or full:  # asked again with no new verdict (or no room left)
            return full or time.monotonic() > deadline
        last[0] = count
        trim_now()
        if trace and count % TRACE_EVERY == 0:
            gc.collect()
            traced.add(count, tracemalloc.get_traced_memory()[0], 0, 0, 0)
        kinds = mapping_kinds_kb() if smaps else ()
        recorder.add(count, time.monotonic(), rss_kb(), cpu_s(), malloc_kb(), *kinds)
        return time.monotonic() > deadline

    try:
        Supervisor(instance, engine, image, stop_when=sample).run()
    finally:
        engine.reconcile(instance=instance.instance_id)
    kinds = {name: recorder.column(name) for name in MAPPING_KINDS} if smaps else {}
    return recorder.samples(), [(s.verdict, int(s.at)) for s in traced.samples()], kinds


@dataclass
class Fit:
    slope: float
    noise: float  # three standard errors of the slope

    def within_noise(self, quantum: float = 0.0) -> bool:
        return abs(self.slope) <= self.noise + quantum


def batch_fit(xs: list[float], ys: list[float], batches: int = BATCHES) -> Fit:
    """`fit` over the means of `batches` consecutive runs of samples (the batch-means method)."""
    size = len(xs) // batches
    if size < 2:
        return fit(xs, ys)
    cuts = [(i * size, (i + 1) * size if i < batches - 1 else len(xs)) for i in range(batches)]
    return fit([statistics.fmean(xs[a:b]) for a, b in cuts], [statistics.fmean(ys[a:b]) for a, b in cuts])


def fit(xs: list[float], ys: list[float]) -> Fit:
    """Least-squares slope of ys over xs and three standard errors of it (from the residuals)."""
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if len(xs) < 3 or not spread:
        return Fit(0.0, math.inf)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
    residuals = [y - (mean_y + slope * (x - mean_x)) for x, y in zip(xs, ys, strict=True)]
    stderr = math.sqrt(sum(r * r for r in residuals) / (len(xs) - 2) / spread)
    return Fit(slope, 3 * stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--engine", choices=("docker", "fake"), default="docker")
    parser.add_argument(
        "--home-fs",
        choices=("ext4", "tmp"),
        default="ext4" if os.geteuid() == 0 else "tmp",
        help="where the instance lives: a journaled ext4 image the bench mounts (default as "
        "root) or the temporary folder (default otherwise)",
    )
    parser.add_argument("--no-trace", action="store_true", help="RSS only: no tracemalloc, no collections")
    parser.add_argument("--smaps", action="store_true", help="also split RSS by kind of mapping, every verdict")
    parser.add_argument("--malloc-trim", action="store_true", help="diagnostic: malloc_trim(0) after every verdict")
    args = parser.parse_args()
    with home_folder(args.home_fs) as folder:
        samples, traced, kinds = soak(
            args.seconds, args.engine, trace=not args.no_trace, folder=folder, smaps=args.smaps, trim=args.malloc_trim
        )
    if len(samples) < 7:
        raise SystemExit(f"only {len(samples)} verdicts in {args.seconds:g} s: run longer")
    window = 100 if len(samples) >= 301 else (len(samples) - 1) // 3
    wall_first, wall_last = ratio_parts([s.at for s in samples], window)
    cpu_first, cpu_last = ratio_parts([s.cpu for s in samples], window)
    print(
        f"verdicts {len(samples)} in {args.seconds:g} s ({args.engine} engine, home on {args.home_fs}); median per verdict, first "
        f"{window} vs last {window}: wall {wall_first * 1000:.0f} -> {wall_last * 1000:.0f} ms "
        f"(ratio {wall_last / wall_first:.2f}), cpu {cpu_first * 1000:.0f} -> {cpu_last * 1000:.0f} ms"
    )
    warm = samples[len(samples) // 2 :]  # the first half is warm-up
    verdicts = [float(s.verdict) for s in warm]
    rss = batch_fit(verdicts, [float(s.rss_kb) for s in warm])
    heap = batch_fit(verdicts, [float(s.malloc_kb) for s in warm])
    quantum = PAGE_KB / max(1, warm[-1].verdict - warm[0].verdict)
    later = [(v, b) for v, b in traced if v >= warm[0].verdict]
    traced_text = "traced python not measured (--no-trace)"
    if len(later) >= 3:
        python = batch_fit([float(v) for v, _ in later], [float(b) for _, b in later])
        traced_text = f"traced python {python.slope:+.1f} +- {python.noise:.1f} B/verdict"
    print(
        f"rss_kb first {samples[0].rss_kb} warm {warm[0].rss_kb} last {samples[-1].rss_kb}; after warm-up "
        f"(verdicts {warm[0].verdict}-{warm[-1].verdict}): rss {rss.slope:+.3f} +- {rss.noise + quantum:.3f} "
        f"KB/verdict (3 standard errors of {BATCHES} batch means + one 4 KB page over the window); malloc in use "
        f"{heap.slope:+.3f} +- {heap.noise:.3f} KB/verdict; {traced_text}"
    )
    if kinds:
        print_kinds(samples, kinds)
    print(f"verdict_time_ratio {cpu_last / cpu_first:.2f} (target <= 1.1)")
    reported = 0.0 if rss.within_noise(quantum) else rss.slope
    print(f"rss_growth_per_verdict_kb {reported:.2f} (target 0)")


def print_kinds(samples: list[Sample], kinds: dict[str, list[float]]) -> None:
    """Per kind of mapping: resident KB at the first sample, at warm-up and at the end, and the
    slope after warm-up (KB/verdict, same batch means as the RSS line)."""
    half = len(samples) // 2
    verdicts = [float(s.verdict) for s in samples[half:]]
    parts = []
    for name, column in kinds.items():
        slope = batch_fit(verdicts, column[half:])
        parts.append(
            f"{name} {column[0]:.0f}/{column[half]:.0f}/{column[-1]:.0f} KB {slope.slope:+.3f} +- {slope.noise:.3f}"
        )
    print("resident by mapping (first/warm/last, slope after warm-up KB/verdict): " + "; ".join(parts))


def ratio_parts(values: list[float], window: int) -> tuple[float, float]:
    """Median gap between consecutive verdicts, over the first and the last `window` gaps.

    Medians: a burst of load from other work on the machine should not pass for a slowdown."""
    gaps = [b - a for a, b in zip(values, values[1:], strict=False)]
    return statistics.median(gaps[:window]), statistics.median(gaps[-window:])


if __name__ == "__main__":
    os.environ.pop("ANTHROPIC_API_KEY", None)
    main()
