"""Docs that run: every Python and shell block of README.md and docs/*.md runs as pasted.

Each Python block runs in a fresh interpreter; each shell block in bash with
``set -euo pipefail``, where ``pipewarden`` runs this checkout's ``python -m agent``. Both
run in an empty temporary directory (``examples/`` copied, ``alerts/`` and ``dashboards/``
linked in, as in a clone) with a state directory of their own; whatever a block leaves
running is killed when it ends. A block may be left out only with an HTML
comment on the line before its fence, ``<!-- not run: reason -->``, for blocks
that install packages or start servers.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LANGUAGES = {"python": "python", "py": "python", "bash": "shell", "sh": "shell", "shell": "shell"}
#: The parts of a clone a block only reads, linked into its working directory (examples/ is copied).
LINKED = ("alerts", "dashboards")
NOT_RUN = re.compile(r"^<!--\s*not run:\s*(.+?)\s*-->$")
FENCE = re.compile(r"^```\s*([\w+-]*)\s*$")


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int
    language: str
    code: str
    skip: str | None

    @property
    def id(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}"


def blocks(doc: Path) -> list[Block]:
    """The fenced blocks of ``doc`` in a language that runs, with the reason when one is marked not run."""
    found: list[Block] = []
    lines = doc.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, language = i, m.group(1).lower()
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        before = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marked = NOT_RUN.match(before)
        if language in LANGUAGES:
            found.append(
                Block(
                    doc,
                    start + 1,
                    LANGUAGES[language],
                    "\n".join(lines[start + 1 : end]) + "\n",
                    marked.group(1) if marked else None,
                )
            )
        i = end + 1
    return found


ALL = [b for doc in DOCS for b in blocks(doc)]


def _environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PIPEWARDEN_"))}
    # ``pipewarden`` is this checkout's, as an executable (so ``pipewarden ... &`` makes $! the agent itself).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "pipewarden"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m agent "$@"\n')
    shim.chmod(0o755)
    return {
        **env,
        "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": str(REPO),
        "PIPEWARDEN_HOME": str(tmp_path / "home"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "PYTHON": sys.executable,
    }


@pytest.mark.parametrize("block", ALL, ids=[b.id for b in ALL])
def test_doc_block_runs_as_pasted(block: Block, tmp_path: Path) -> None:
    """The block exits 0 when pasted into a fresh interpreter or shell."""
    if block.skip:
        pytest.skip(block.skip)
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(REPO / "examples", work / "examples")  # a block may write beside the examples
    for part in LINKED:
        (work / part).symlink_to(REPO / part)
    if block.language == "python":
        script = work / "block.py"
        script.write_text(block.code)
        argv = [sys.executable, str(script)]
    else:
        script = work / "block.sh"
        script.write_text("set -euo pipefail\n" + block.code)
        argv = ["bash", str(script)]
    with subprocess.Popen(
        argv,
        cwd=work,
        env=_environment(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=300)
        finally:
            with contextlib.suppress(ProcessLookupError):  # what a failed block left running in the background
                os.killpg(proc.pid, signal.SIGKILL)
    done = subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)
    assert done.returncode == 0, f"{block.id} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"


def test_blocks_are_found_and_exceptions_are_rare() -> None:
    """The test sees the README's and each doc's blocks, and at most a couple are marked not run."""
    assert {b.doc.name for b in ALL} >= {"README.md", "checks.md", "orchestrator.md"}
    assert sum(b.skip is not None for b in ALL) <= 2
