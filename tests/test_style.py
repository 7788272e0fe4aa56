"""The code as committed: ruff's lint and format checks and mypy pass on the whole tree."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _tool(name: str) -> list[str]:
    """``python -m name`` of the test environment, so the pinned versions are the ones that run."""
    if name == "ruff":
        found = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
        if found is None:
            pytest.fail("ruff is not installed (it is in the test extra: pip install -e '.[test]')")
        return [found]
    return [sys.executable, "-m", name]


@pytest.mark.parametrize(
    "argv",
    [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_the_tree_passes(argv: list[str]) -> None:
    """The linter, the formatter's check and the type checker report nothing to fix."""
    done = subprocess.run([*_tool(argv[0]), *argv[1:]], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(argv)}:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}"
