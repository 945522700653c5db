"""The generation tags `gen/N` of the trusted repository: which commit is which generation.

Asked at every verdict and agent start, so Python never parses a listing of every generation there:
git sorts, or lists as text that is searched whole, and the last answer is remembered (and checked,
never trusted) so that the commonest question costs one git call that returns one line.
"""

from __future__ import annotations

import re

from supervisor.base.generation_number import generation_number_or_none
from supervisor.base.git_ops import GEN_TAG_PREFIX, Git

# A generation's name is the number as the supervisor writes it (`base.generation_number`): a tag of
# another shape (gen/0010, gen/²) is not a generation to any reader, so `latest` (git's version sort
# puts gen/0010 below gen/9) and `all` never disagree and no number is given twice.
_FULL_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


class GenerationTags:
    """The gen/N tags of one repository, read through `git`."""

    def __init__(self, git: Git) -> None:
        self.git = git
        self._known: tuple[str, int] | None = None  # (commit, number): see `of`

    def all(self) -> dict[int, str]:
        """Every generation number with its commit (a listing: for rare paths, not per verdict)."""
        tags = self.git.refs(GEN_TAG_PREFIX.rstrip("/"))
        numbered = ((generation_number_or_none(ref[len(GEN_TAG_PREFIX) :]), sha) for ref, sha in tags.items())
        return {number: sha for number, sha in numbered if number is not None}

    def latest(self) -> tuple[int, str | None]:
        """The highest generation number and its commit ((0, None) if none): git sorts the tags
        and hands over one, so nothing here grows with the lineage."""
        top = self.git.out(
            "for-each-ref",
            "--sort=-version:refname",
            "--count=1",
            "--format=%(refname) %(objectname)",
            GEN_TAG_PREFIX.rstrip("/"),
        )
        name, _, commit = top[len(GEN_TAG_PREFIX) :].partition(" ")
        if not top:
            return 0, None
        if (number := generation_number_or_none(name)) is not None:
            return number, commit
        generations = self.all()  # a tag of another shape sorts first: read them all
        number = max(generations, default=0)
        return number, generations.get(number)

    def of(self, commit: str) -> int | None:
        """The generation `commit` is tagged as (the highest, if several), or None.

        Asked at every verdict and agent start, so it does no work per generation in Python, and
        little in git when it can help it: the last answer is remembered and, asked about the same
        commit, checked by asking git for the newest tag (it must still be that one: reading only
        its own tag would miss a higher one given to the same commit since, and `of` answers the
        highest). Otherwise git lists the tags (`--points-at` would make it read every tagged
        object) and the commit is searched for in the text."""
        full = commit if _FULL_ID.fullmatch(commit) else self.git.rev_parse(commit)
        if full is None:
            return None
        known = self._known
        if known is not None and known[0] == full and self.latest() == (known[1], full):
            return known[1]
        text = "\n" + self.git.out("for-each-ref", "--format=%(objectname) %(refname)", GEN_TAG_PREFIX.rstrip("/"))
        needle, numbers, at = f"\n{full} {GEN_TAG_PREFIX}", [], 0
        while (at := text.find(needle, at)) >= 0:
            at += len(needle)
            end = text.find("\n", at)
            name = text[at:] if end < 0 else text[at:end]
            if (number := generation_number_or_none(name)) is not None:
                numbers.append(number)
        if not numbers:
            return None
        self.remember(full, max(numbers))
        return max(numbers)

    def remember(self, commit: str, number: int) -> None:
        """What `of` checks first (set when a commit is tagged, or found tagged)."""
        self._known = (commit, number)
