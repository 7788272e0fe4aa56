"""docs/alerts.md: every YAML, JSON, Python and shell block works as pasted; the default rules are all described."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from servers import require_binary

from alerts.config import build_receivers, build_rules, parse_config
from alerts.rules import DEFAULT_RULES

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "alerts.md"
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def blocks(*langs: str) -> list[object]:
    found = [(lang, text) for lang, text in BLOCKS if lang in langs]
    return [pytest.param(text, id=f"{lang}-{i}") for i, (lang, text) in enumerate(found)]


@pytest.mark.parametrize("text", blocks("yaml", "yml"))
def test_yaml_blocks_parse_and_alerts_sections_validate(text: str) -> None:
    """Each YAML block parses; an alerts: section validates and builds its rules and receivers."""
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict)
    if "alerts" in doc:
        cfg = parse_config(doc["alerts"])
        assert build_rules(cfg)
        env = {name: "https://example.invalid/x" for name in re.findall(r"_env: (\w+)", text)}
        assert build_receivers(cfg, env=env)


@pytest.mark.parametrize("text", blocks("json"))
def test_json_blocks_are_json(text: str) -> None:
    """Payload examples are valid JSON."""
    assert json.loads(text)


@pytest.mark.parametrize("text", blocks("python"))
def test_python_blocks_run(text: str) -> None:
    """Each Python block runs on its own from the repository root and exits 0."""
    res = subprocess.run([sys.executable, "-c", text], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("text", blocks("bash", "sh", "shell"))
def test_shell_blocks_run(text: str, tmp_path: Path) -> None:
    """Each shell block runs from the repository root (pipewarden being this checkout) and exits 0."""
    for tool in ("promtool", "amtool"):
        if tool in text:
            require_binary(tool)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "pipewarden"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m agent "$@"\n')
    shim.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(REPO),
        "PIPEWARDEN_HOME": str(tmp_path / "home"),
    }
    res = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", text], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_default_rule_is_in_the_table() -> None:
    """The default-rules table names each rule of DEFAULT_RULES with its severity."""
    text = DOC.read_text(encoding="utf-8")
    for rule in DEFAULT_RULES:
        assert re.search(rf"\| `{rule.name}` \|[^\n]*\| {rule.severity} \|", text), rule.name
