"""The agent's long-term memory of its lineage: a read-only copy of its history, given at each start.

`build()` keeps `HOME/run/history/` current:

    repo.git/     a bare repository holding only the history: main, the gen/N tags, rejected and
                  rolled-back proposals (as branches rejected/<id>, rolled-back/<n>). Objects are
                  copied as a pack the trusted repository's `git pack-objects` writes into it (only
                  what the mirror lacks) and refs are set by `git update-ref`: no transport, no
                  alternates, no remote, no FETCH_HEAD, no hooks, no reflogs; nothing in it names
                  the trusted repository.
    SUMMARY.md    accepted generations with their whys, rejected proposals with their verdicts, and
                  the scorecard trend (its own goals and the tasks it was judged on), from the
                  supervisor's own records.
    gitconfig     `safe.directory = *`, so git inside the container reads a repository it does not own.

`folder_for()` is what the agent's container gets: that folder, read-only, at /history, with the
environment that points git and the agent at it (supervisor/gate/agent_container.py mounts it; the
layout is supervisor/gate/history_layout.py's, which acceptance's stand-in shares). The agent can
run `git log` there and write nothing.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from supervisor.base import periodic
from supervisor.base.git_ops import Git, GitError, safe_env
from supervisor.base.text import plain
from supervisor.gate import history_layout
from supervisor.gate.history_layout import MIRROR_MAIN, SHARED
from supervisor.store.instance import Instance
from supervisor.store.scorecard import ScorecardStore

log = logging.getLogger("ouroboros.lineage")
# Trusted ref (or prefix, ending in /) -> the mirror's name for it.
MAPPING = (
    ("refs/heads/main", "refs/heads/main"),
    ("refs/tags/gen/", "refs/tags/gen/"),
    ("refs/ouroboros/rejected/", "refs/heads/rejected/"),
    ("refs/ouroboros/rolled-back/", "refs/heads/rolled-back/"),
)
SUMMARY_ROWS = 20
COMPACT_AFTER = 20  # packs (or hundreds of loose objects) before the small packs are merged
FULL_GC_EVERY_S = 86_400  # and a full gc, dropping what the trusted side pruned, once a day at most
PACK_REFS_AFTER = 100  # refs changed by one build beyond which they are packed at once


def history_dir(instance: Instance) -> Path:
    return instance.run_dir / "history"


def build(instance: Instance) -> Path:
    """Bring the history mirror and its summary up to date; returns the folder to mount."""
    folder = history_dir(instance)
    repo = folder / "repo.git"
    if not (repo / "HEAD").exists():
        shutil.rmtree(repo, ignore_errors=True)  # a half-made mirror of a killed supervisor
        history_layout.init_bare(repo)
    mirror = Git(repo)
    if mirror.out("config", "--get", "core.sharedRepository", check=False) != SHARED:
        mirror.run("config", "core.sharedRepository", SHARED)  # a mirror made before git set the modes:
        _readable_tree(folder)  # once, then never again (a walk per start grew with the lineage)
    _sync(Git(instance.repo), mirror)
    _compact(mirror, instance.run_dir / "history-gc")
    store = ScorecardStore(instance.state, instance.goals)
    store.update()
    history_layout.finish(folder, summary(store))
    return folder


def wanted_refs(trusted: Git) -> dict[str, str]:
    """The mirror's refs as they should be: each trusted ref of MAPPING under its mirror name."""
    wanted = {}
    for ref, sha in trusted.refs(*(source for source, _ in MAPPING)).items():
        for source, target in MAPPING:
            if ref == source or (source.endswith("/") and ref.startswith(source)):
                wanted[target + ref[len(source) :]] = sha
                break
    return wanted


def _sync(trusted: Git, mirror: Git) -> None:
    """Make the mirror's refs `wanted_refs`, copying only the objects it lacks.

    The work is in the refs that changed since the last start, not in the lineage (see `ref_changes`).
    The objects of the new tips not reachable from the mirror's main go over as one pack that the
    trusted side's `pack-objects` writes straight into the mirror (a `git fetch` compared every ref
    and checked connectivity against all of them: its cost grew with every generation).
    Crash-only: a kill leaves at worst an extra pack; refs move only after their objects are in place.
    """
    changed, stale = ref_changes(trusted, mirror)
    if changed:
        revs = [*sorted(set(changed.values()))]
        basis = mirror.ref_value(MIRROR_MAIN)
        if basis is not None and trusted.rev_parse(basis) == basis:  # the trusted side may have pruned it
            revs.append(f"^{basis}")
        pack = mirror.git_dir / "objects" / "pack"
        pack.mkdir(parents=True, exist_ok=True)
        trusted.run(
            "-c",
            f"core.sharedRepository={SHARED}",
            "pack-objects",
            "--revs",
            "--quiet",
            str(pack / "pack"),
            input="".join(f"{rev}\n" for rev in revs).encode(),
            timeout_s=1800,
        )
    commands = [f"update {ref} {sha}\n" for ref, sha in sorted(changed.items())]
    commands += [f"delete {ref}\n" for ref in stale]
    if commands:
        mirror.run("update-ref", "--stdin", input="".join(commands).encode())
    if len(commands) > PACK_REFS_AFTER:  # a first build of a long lineage: one file of refs, not a file each,
        mirror.run("pack-refs", "--all", "--prune")  # which every later start would read (until a compaction)


def ref_changes(trusted: Git, mirror: Git) -> tuple[dict[str, str], list[str]]:
    """What the mirror lacks ({mirror ref: sha}) and what it holds that is gone (mirror refs).

    Both sides name each ref the same once its first two parts are cut (refs/ouroboros/rejected/x
    and refs/heads/rejected/x are both rejected/x), so git lists each side sorted by that short
    name and `comm` sets the two listings side by side: the supervisor reads only the lines that
    differ. A listing in Python grew with the lineage (three refs a generation), in time and in
    the memory it held while it compared."""

    def listing(git: Git, prefixes: tuple[str, ...]) -> list[str]:
        return git.command(
            "for-each-ref", "--sort=refname:lstrip=2", "--format=%(refname:lstrip=2) %(objectname)", *prefixes
        )

    ours = listing(trusted, tuple(source for source, _ in MAPPING))
    theirs = listing(mirror, tuple(target for _, target in MAPPING))
    with _piped(ours, trusted.git_dir) as left, _piped(theirs, mirror.git_dir) as right:
        try:
            done = subprocess.run(
                ["comm", "-3", f"/dev/fd/{left}", f"/dev/fd/{right}"],
                pass_fds=(left, right),
                capture_output=True,
                env=safe_env(),
                timeout=600,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise GitError(f"could not compare the history's refs: {exc}") from exc
    if done.returncode != 0:
        raise GitError(f"could not compare the history's refs: {done.stderr.decode(errors='replace').strip()}")
    changed: dict[str, str] = {}
    gone: list[str] = []
    for line in done.stdout.decode(errors="replace").splitlines():
        short, _, sha = line.lstrip("\t").partition(" ")
        ref = _mirror_ref(short)
        if ref is None:
            continue
        if line.startswith("\t"):
            gone.append(ref)
        else:
            changed[ref] = sha
    return changed, sorted(ref for ref in gone if ref not in changed)


def _mirror_ref(short: str) -> str | None:
    """The mirror's full name for a short one (as `ref_changes` lists them)."""
    for _, target in MAPPING:
        cut = target.split("/", 2)[2]
        if short == cut or (cut.endswith("/") and short.startswith(cut)):
            return target[: len(target) - len(cut)] + short
    return None


@contextmanager
def _piped(command: list[str], cwd: Path) -> Iterator[int]:
    """Run `command`; yield the reading end of its output for another program to read, then reap it."""
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=cwd, env=safe_env())
    except OSError as exc:
        raise GitError(f"could not run `git for-each-ref`: {exc}") from exc
    assert process.stdout is not None  # stdout=PIPE
    try:
        yield process.stdout.fileno()
    finally:
        process.stdout.close()
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
    if code not in (0, -signal.SIGPIPE):
        raise GitError(f"`git for-each-ref` in {cwd} failed (exit {code})")


def _compact(mirror: Git, stamp: Path) -> None:
    """Keep the mirror few files at a cost that does not grow with the lineage: once fetches have left
    many packs, merge the small ones (geometric: a pack is rewritten only when the ones after it
    together reach its size, so each object is copied O(log n) times in all); once a day at most a
    full gc drops what the trusted side pruned (rejected proposals past retention)."""
    counts = dict(line.split(": ", 1) for line in mirror.out("count-objects", "-v").splitlines() if ": " in line)
    if int(counts.get("packs", "0")) + int(counts.get("count", "0")) // 100 <= COMPACT_AFTER:
        return
    if periodic.due(stamp, FULL_GC_EVERY_S):
        mirror.run("gc", "--quiet", "--prune=now", timeout_s=1800)
        periodic.done(stamp)
    else:
        mirror.run("repack", "-d", "-q", "--geometric=2", timeout_s=1800)
        mirror.run("pack-refs", "--all", "--prune")  # one file of refs, not one per generation


def folder_for(instance: Instance) -> Path | None:
    """The folder to mount at /history for the agent's start (see supervisor/gate/agent_container.py).

    Memory is a help, not a condition: if the history cannot be built (a full disk, a git failure),
    the agent starts without it rather than not at all, and the next start tries again.
    """
    try:
        return build(instance)
    except (GitError, OSError, sqlite3.Error) as exc:
        log.warning("the agent starts without its history: %s", exc)
        return None


def summary(store: ScorecardStore) -> str:
    """A short markdown page: what was accepted and why, what was rejected and why, the trend."""
    cards = store.cards(limit=SUMMARY_ROWS)
    rejected = store.candidates(limit=SUMMARY_ROWS, state="rejected")
    lines = list(history_layout.SUMMARY_HEAD)
    lines += [
        f"- gen {c.generation} ({c.commit[:12]}): {plain(c.why, 200)}"
        + (" — later rolled back" if c.rolled_back else "")
        for c in cards
    ]
    lines += history_layout.REJECTED_HEAD
    for row in rejected:
        reasons = "; ".join(row.reasons)
        tests = ", ".join(t for t in (str(f.get("test_id", "")) for f in row.failures[:5]) if t not in reasons)
        lines.append(
            f"- {row.id} (from gen {row.gen}): {plain(row.summary, 200)} — {plain(reasons, 400)}"
            + (f" — failing: {plain(tests, 300)}" if tests else "")
        )
    lines += history_layout.TREND_HEAD
    for c in cards[:10]:
        per_goal = f"{c.tokens_per_goal:,.0f}" if c.tokens_per_goal is not None else "-"
        per_task = f"{c.tokens_per_passed_task:,.0f}" if c.tokens_per_passed_task is not None else "-"
        lines.append(
            f"| {c.generation} | {c.tokens:,} | {c.usd:.4f} | {c.goals} | {per_goal} | "
            f"{c.made}/{c.accepted}/{c.rejected} | {c.crashes} | "
            f"{c.tasks_passed}/{c.tasks_failed}/{c.tasks_infrastructure} | {c.task_regressions} | {per_task} |"
        )
    return "\n".join(lines) + "\n"


def _readable_tree(folder: Path) -> None:
    """World-readable, writable by the supervisor only (the container's user is someone else)."""
    for root, _dirs, files in os.walk(folder):
        os.chmod(root, 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)
