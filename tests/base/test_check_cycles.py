"""scripts/check_cycles.py: every import counts, wherever it stands; the real tree has no cycle."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_cycles.py"


def _check(root: Path, *groups: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--root", str(root), *groups], capture_output=True, text=True, timeout=120
    )


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_cycle_under_type_checking_fails(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/keeper.py": "from pkg.merge import merge\n",
            "pkg/merge.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.keeper import Keeper\n"
            ),
        },
    )
    result = _check(root, "pkg")
    assert result.returncode == 1, result.stdout
    assert "pkg.keeper -> pkg.merge" in result.stdout and "pkg.merge -> pkg.keeper" in result.stdout


def test_a_cycle_through_a_function_local_relative_import_fails(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/sub/__init__.py": "",
            "pkg/sub/ledger.py": "def open_it():\n    from . import checkpoint\n    return checkpoint\n",
            "pkg/sub/checkpoint.py": "from ..sub.ledger import open_it\n",
        },
    )
    result = _check(root, "pkg")
    assert result.returncode == 1, result.stdout
    assert "pkg.sub.checkpoint, pkg.sub.ledger" in result.stdout


def test_a_name_from_a_package_is_an_edge_to_its_init(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.store import Store\n",
            "pkg/store.py": "def f():\n    from pkg import Store\n    return Store\n",
        },
    )
    result = _check(root, "pkg")
    assert result.returncode == 1 and "pkg.store -> pkg" in result.stdout, result.stdout


def test_a_tree_without_a_cycle_passes(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.store import Store\n",
            "pkg/models.py": "import json\n",
            "pkg/store.py": "from pkg import models\nfrom pkg.models import json\nclass Store: ...\n",
            "pkg/keeper.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from pkg.store import Store\n"
                "def run():\n"
                "    from .models import json\n"
            ),
        },
    )
    result = _check(root, "pkg")
    assert result.returncode == 0, result.stdout
    assert "no import cycle" in result.stdout


def test_the_real_tree_has_no_import_cycle() -> None:
    result = _check(ROOT)
    assert result.returncode == 0, result.stdout
