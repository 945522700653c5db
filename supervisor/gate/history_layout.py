"""What the agent's read-only lineage folder (/history in its container) holds, and a stand-in of it.

The live agent gets a mirror of its lineage (supervisor/loop/lineage_view.py builds it); a candidate
judged by acceptance gets `stand_in()`: the same layout (a bare `repo.git` whose HEAD is `main`,
`SUMMARY.md`, `gitconfig`), holding the trusted side's `main` and `gen/N` tags, so that nothing in
the folder's shape tells a judged run from a live one. Only the content may differ (the stand-in
lists no rejected proposals and no scorecard rows).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from supervisor.base.git_ops import GEN_TAG_PREFIX, Git
from supervisor.gate.generations import GenerationTags

TARGET = "/history"
SHARED = "0644"  # git itself creates the mirror's files world-readable, whatever the supervisor's umask
GITCONFIG = "[safe]\n\tdirectory = *\n"
LEFTOVERS = ("FETCH_HEAD", "ORIG_HEAD", "logs", "hooks", "description")
MIRROR_MAIN = "refs/heads/main"
SUMMARY_HEAD = [
    "# Your lineage (written by the supervisor; read-only)",
    "",
    "Run `git --git-dir=/history/repo.git log --oneline --graph --all` for the full history:",
    "`main`, the `gen/N` tags, and every rejected proposal as branch `rejected/<id>`.",
    "",
    "## Accepted generations (newest first)",
    "",
]
REJECTED_HEAD = ["", "## Rejected proposals (newest first)", ""]
TREND_HEAD = [
    "",
    "## Scorecard trend (newest first)",
    "",
    "| gen | tokens | USD | goals | tokens/goal | proposals made/accepted/rejected | crashes "
    "| tasks passed/failed/infrastructure | regressions | tokens/passed task |",
    "|---|---|---|---|---|---|---|---|---|---|",
]


def environment() -> dict[str, str]:
    """What points git and the agent at the folder inside the container."""
    return {"OUROBOROS_HISTORY": TARGET, "GIT_CONFIG_GLOBAL": f"{TARGET}/gitconfig"}


def init_bare(repo: Path) -> Git:
    """An empty bare repository as the mirror starts: no template (no hooks), files world-readable."""
    repo.mkdir(parents=True)
    git = Git(repo)
    git.run("init", "--quiet", "--bare", "--template=", f"--shared={SHARED}", str(repo))
    return git


def finish(folder: Path, summary: str) -> None:
    """HEAD on main, git's leftovers gone, gitconfig and SUMMARY.md written, folders world-readable."""
    repo = folder / "repo.git"
    Git(repo).run("symbolic-ref", "HEAD", MIRROR_MAIN)
    for leftover in LEFTOVERS:
        path = repo / leftover
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    write(folder / "gitconfig", GITCONFIG)
    write(folder / "SUMMARY.md", summary)
    for path in (folder, repo):
        os.chmod(path, 0o755)


def stand_in(trusted: Git, folder: Path) -> Path:
    """A fresh lineage folder for a judged run: the trusted side's main and gen/N tags, copied as one
    pack its `pack-objects` makes (as the live mirror is filled); returns `folder`."""
    mirror = init_bare(folder / "repo.git")
    refs = trusted.refs(MIRROR_MAIN, GEN_TAG_PREFIX)
    if refs:
        # One pack, handed to the mirror's own `index-pack`: a pack file that `pack-objects` wrote
        # beside the trusted repository could not be renamed onto the (capped) work area's filesystem.
        revs = "".join(f"{sha}\n" for sha in sorted(set(refs.values())))
        pack = trusted.run("pack-objects", "--revs", "--stdout", "--quiet", input=revs.encode(), timeout_s=1800)
        mirror.run("index-pack", "--stdin", input=pack.stdout, timeout_s=1800)
        mirror.run(
            "update-ref", "--stdin", input="".join(f"update {r} {s}\n" for r, s in sorted(refs.items())).encode()
        )
    finish(folder, _summary(trusted))
    return folder


def _summary(trusted: Git) -> str:
    """The live summary's layout; accepted generations from the tags (their subjects), nothing else."""
    tags = sorted(GenerationTags(trusted).all().items(), reverse=True)[:20]
    lines = list(SUMMARY_HEAD)
    for number, sha in tags:
        subject = trusted.out("log", "-1", "--format=%s", sha, check=False)[:200]
        lines.append(f"- gen {number} ({sha[:12]}): {subject}")
    return "\n".join(lines + REJECTED_HEAD + TREND_HEAD) + "\n"


def write(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}")
    temp.write_text(text)
    os.chmod(temp, 0o644)  # the container's user is someone else
    os.replace(temp, path)
