"""The outcome of every test of a generation, cached per commit under the gate's `reports/`.

The gate compares a candidate's test outcomes with its base's (no test may vanish or turn into a
skip); the base's come from this cache, filled when the base itself passed. A torn or edited cache
file is not trusted: it is dropped and the base's tests are run again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

Outcomes = dict[str, str]


class BaselineCache:
    def __init__(self, folder: Path, warn: Callable[[str], None]) -> None:
        self.folder = folder
        self.warn = warn

    def get(self, base: str, compute: Callable[[], Outcomes | None]) -> Outcomes | None:
        path = self.folder / f"{base}.json"
        if path.exists():
            try:
                data = json.loads(path.read_text())
                return {str(test_id): str(outcome) for test_id, outcome in dict(data).items()}
            except (OSError, ValueError, TypeError) as exc:
                self.warn(f"the baseline cache {path} is unreadable ({exc}); it is computed again")
                path.unlink(missing_ok=True)
        outcomes = compute()
        if outcomes is not None:
            self.store(base, outcomes)
        return outcomes

    def store(self, commit: str, outcomes: Outcomes) -> None:
        if outcomes:
            temp = self.folder / f"{commit}.json.tmp{os.getpid()}"
            temp.write_text(json.dumps(outcomes, sort_keys=True))
            os.replace(temp, self.folder / f"{commit}.json")
