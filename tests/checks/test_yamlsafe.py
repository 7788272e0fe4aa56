"""YAML that cannot take the machine down: alias bombs refused quickly, errors with file and line."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from checks import CheckConfigError, from_config
from checks.config import load_checks
from checks.yamlsafe import YamlError, load_yaml

REPO = Path(__file__).resolve().parents[2]

LEVELS = "\n".join(f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]" for a, b in zip("abcdefghi", "bcdefghij", strict=True))
BOMB = f'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n{LEVELS}\n'


@pytest.mark.parametrize(
    "use",
    [
        "checks:\n  - not_null: *j\n",
        "checks:\n  - drift: {columns: [amount], thresholds: {psi: *j}}\n",
    ],
    ids=["bombed-columns", "bombed-threshold"],
)
def test_an_alias_bomb_is_refused_at_once_by_from_config(tmp_path: Path, use: str) -> None:
    """A 1 KB billion-laughs document passed through yaml.safe_load to from_config is refused, not walked."""
    (tmp_path / "pipewarden.yml").write_text(BOMB + use)
    script = textwrap.dedent("""
        import sys, yaml
        from checks import CheckConfigError, from_config
        try:
            from_config(yaml.safe_load(open(sys.argv[1]))["checks"])
        except CheckConfigError as exc:
            print(exc)
    """)
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "pipewarden.yml")],
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,  # the walk it replaces took minutes and gigabytes
    )
    assert done.returncode == 0, done.stderr
    assert "billion laughs" in done.stdout and len(done.stdout) < 500


def test_load_checks_refuses_a_bomb_naming_file_and_line(tmp_path: Path) -> None:
    """Reading the file with the bounded loader stops at the anchor that blows up, with file:line."""
    path = tmp_path / "pipewarden.yml"
    path.write_text(BOMB + "checks:\n  - not_null: *j\n")
    with pytest.raises(YamlError) as info:
        load_checks(path)
    assert isinstance(info.value, CheckConfigError)
    assert str(info.value).startswith(f"{path}:6: the document expands to more than 100,000 values")
    assert (info.value.path, info.value.line) == (str(path), 6)


def test_a_recursive_alias_is_refused_with_its_line() -> None:
    """An alias inside the value it names is an error naming the line, not a hang or a recursion error."""
    with pytest.raises(YamlError, match=r"^cfg.yml:2: an alias refers to the value that contains it"):
        load_yaml("ok: 1\nloop: &l [1, *l]\n", path="cfg.yml")
    with pytest.raises(CheckConfigError, match="contains itself"):
        from_config(yaml.safe_load("&l [{not_null: *l}]"))


def test_bad_syntax_names_the_line() -> None:
    """A YAML syntax error is one YamlError with file and line."""
    with pytest.raises(YamlError, match=r"^cfg.yml:3: not valid YAML"):
        load_yaml("checks:\n  - unique: id\n    oops: : x\n", path="cfg.yml")


def test_ordinary_aliases_still_work(tmp_path: Path) -> None:
    """A configuration that reuses a few values through aliases loads and builds its checks."""
    path = tmp_path / "pipewarden.yml"
    path.write_text("cols: &cols [amount, country]\nchecks:\n  - not_null: *cols\n  - no_duplicate_rows: *cols\n")
    assert [c.name for c in load_checks(path)] == ["not_null(amount,country)", "no_duplicate_rows"]
