"""docs/daemon.md: its configurations validate and its tables name every key of pipewarden.yml.

Its shell blocks run in tests/test_docs.py, with every other doc's."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agent.config import _models

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "daemon.md"
TEXT = DOC.read_text(encoding="utf-8")
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", TEXT, re.S)


def blocks(*langs: str) -> list[object]:
    found = [(lang, text) for lang, text in BLOCKS if lang in langs]
    return [pytest.param(text, id=f"{lang}-{i}") for i, (lang, text) in enumerate(found)]


def validate(config: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``pipewarden validate CONFIG`` from ``cwd``, with this checkout's code and no ${VAR} of the caller set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORDERS_", "OPS_", "PIPEWARDEN_"))}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "agent", "validate", str(config)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("text", blocks("yaml", "yml"))
def test_yaml_blocks_with_agent_or_pipelines_validate(text: str, tmp_path: Path) -> None:
    """Each configuration block passes pipewarden validate as pasted into a pipewarden.yml at the repository root."""
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict)
    if not {"agent", "pipelines"} & set(doc):
        return
    (tmp_path / "examples").symlink_to(REPO / "examples")  # paths in the block are relative to the repository root
    (tmp_path / "pipewarden.yml").write_text(text)
    res = validate(tmp_path / "pipewarden.yml", tmp_path)
    assert res.returncode == 0, res.stderr
    assert "pipewarden.yml: valid;" in res.stdout


def test_the_example_configuration_validates() -> None:
    """examples/pipewarden.yml, which the shell blocks run, is valid."""
    res = validate(REPO / "examples" / "pipewarden.yml", REPO)
    assert res.returncode == 0, res.stderr
    assert "3 pipeline(s): orders, one_task, arrivals" in res.stdout


def test_the_validation_errors_shown_are_what_validate_prints(tmp_path: Path) -> None:
    """The error lines the doc shows are what pipewarden validate prints for a bad cron and a misspelt parameter."""
    shown = [line for lang, text in BLOCKS if lang == "text" for line in text.splitlines() if line.startswith("error:")]
    assert len(shown) == 2
    (tmp_path / "examples").symlink_to(REPO / "examples")
    (tmp_path / "pipewarden.yml").write_text(
        "agent:\n  listen: 127.0.0.1:9470\n  max_runs: 4\npipelines:\n  - target: examples/pipelines/orders.py\n"
        '    schedule: "*/15 * * *"\n    params: {row: 500}\n'
    )
    res = validate(Path("pipewarden.yml"), tmp_path)
    assert res.returncode == 2
    assert res.stderr.splitlines() == shown


@pytest.mark.parametrize("section, field", [("agent", "agent"), ("pipelines", "pipelines")])
def test_the_reference_tables_name_every_key(section: str, field: str) -> None:
    """Every key pipewarden.yml accepts under agent: and pipelines[] has a row in the doc's table."""
    annotation = _models().model_fields[field].annotation
    model = annotation.__args__[0] if field == "pipelines" else annotation
    table = TEXT.split(f"### `{section}:`", 1)[1].split("###", 1)[0]
    for key in model.model_fields:
        assert re.search(rf"^\| `{key}`", table, re.M), f"{section}.{key} is not in docs/daemon.md"


def test_the_screenshots_exist() -> None:
    """Every image the doc shows is in the repository."""
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", TEXT)
    assert images
    for image in images:
        assert (DOC.parent / image).is_file(), image
