"""Loading pipelines from files, and their versions (git commit or source hash)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agent.errors import ConfigError
from agent.loader import load_pipeline, load_pipelines, split_target
from agent.versions import source_version

SOURCE = "from agent.pipeline import Pipeline\n{defs}\n"


@pytest.mark.parametrize(
    "target, expected",
    [
        ("a/b.py", ("a/b.py", None)),
        ("a/b.py:orders", ("a/b.py", "orders")),
        ("C:/x/b.py", ("C:/x/b.py", None)),
    ],
)
def test_split_target(target: str, expected: tuple[str, str | None]) -> None:
    """file.py[:name] splits into a path and an optional pipeline name."""
    path, name = split_target(target)
    assert (str(path), name) == expected


def test_several_pipelines_need_a_name(tmp_path: Path) -> None:
    """A file with two pipelines needs file.py:name; each is found by name."""
    f = tmp_path / "two.py"
    f.write_text(
        SOURCE.format(
            defs="a = Pipeline('a')\na.task(name='x')(lambda: 1)\nb = Pipeline('b')\nb.task(name='y')(lambda: 2)"
        )
    )
    assert sorted(load_pipelines(f)) == ["a", "b"]
    with pytest.raises(ConfigError, match="several pipelines"):
        load_pipeline(str(f))
    pipe = load_pipeline(f"{f}:b")
    assert pipe.name == "b" and pipe.target == f"{f.resolve()}:b"


def test_import_error_names_the_file_and_line(tmp_path: Path) -> None:
    """An exception while importing the file becomes a ConfigError with file:line."""
    f = tmp_path / "bad.py"
    f.write_text("x = 1\nraise ValueError('boom')\n")
    with pytest.raises(ConfigError, match=r"bad.py:2: .*ValueError: boom") as err:
        load_pipelines(f)
    assert err.value.line == 2


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_version_is_the_commit_when_clean_else_a_source_hash(tmp_path: Path) -> None:
    """A committed, unmodified file is versioned by its last commit; a modified one by a hash of its text."""
    f = tmp_path / "p.py"
    f.write_text("print('v1')\n")
    untracked = source_version(f)
    assert len(untracked) == 12
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "-c", "user.email=t@t", "-c", "user.name=t", "add", "p.py")
    _git(tmp_path, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "v1")
    commit = _git(tmp_path, "log", "-1", "--format=%h", "--abbrev=12")
    assert source_version(f) == commit
    f.write_text("print('v2')\n")
    modified = source_version(f)
    assert modified not in (commit, untracked) and len(modified) == 12


def test_task_sources_are_read_only_for_a_pipeline_without_a_file(tmp_path: Path) -> None:
    """The version hashes the tasks' source text only when there is no file to version."""
    calls: list[int] = []

    def text() -> str:
        calls.append(1)
        return "def t(): ..."

    f = tmp_path / "p.py"
    f.write_text("x = 1\n")
    assert source_version(f, fallback=text) == source_version(f) and calls == []
    assert source_version(None, fallback=text) == source_version(None, fallback="def t(): ...") and calls == [1]
