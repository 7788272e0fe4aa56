"""The alerts package: light to import, its public names, what it may import, and its files shipped."""

from __future__ import annotations

import ast
import fnmatch
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import alerts

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "alerts"
#: What alerts/ may import of pipewarden's (DESIGN.md: the records and events, the errors).
ALLOWED_AGENT = {"agent.records", "agent.events", "agent.errors"}
FORBIDDEN = ("prometheus_client", "opentelemetry", "exporters", "checks", "pandas", "numpy")
#: ... except the standard-library HTTP client with a total deadline, shared with Pushgateway pushes.
SHARED = {"exporters.http"}


def imports_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(m for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize("statement", ["import alerts", "import alerts.evaluator"])
def test_importing_alerts_pulls_in_no_config_http_or_exporter(statement: str) -> None:
    """Neither the package nor the evaluator imports pydantic, HTTP, TLS, prometheus_client or the telemetry."""
    heavy = {
        m
        for m in imports_after(statement)
        if m.split(".")[0] in ("pydantic", "http", "ssl", "prometheus_client", "opentelemetry", "pandas", "croniter")
        or m in ("agent.telemetry", "agent.runner", "agent.store")
    }
    assert heavy == set()


def module_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_alerts_imports_only_records_events_and_errors_of_the_agent(path: Path) -> None:
    """No module of alerts/ imports the runner, telemetry, store or monitor, nor any metrics or tracing library.

    ``exporters.http`` (standard library only) is the one part of exporters/ it uses."""
    names = module_imports(path)
    agent = {n for n in names if n == "agent" or n.startswith("agent.")}
    assert agent <= ALLOWED_AGENT, agent - ALLOWED_AGENT
    assert not {n for n in names - SHARED if n.split(".")[0] in FORBIDDEN}


def test_public_names_are_sorted_and_all_resolve() -> None:
    """__all__ is sorted and every name in it loads."""
    assert alerts.__all__ == sorted(alerts.__all__)
    for name in alerts.__all__:
        assert getattr(alerts, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        alerts.nothing  # noqa: B018


def test_rule_files_and_the_marker_ship_as_package_data() -> None:
    """Every non-Python file in alerts/ matches a package-data pattern of pyproject.toml."""
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["*"]
    files = [p.name for p in PACKAGE.iterdir() if p.is_file() and p.suffix != ".py"]
    assert {"py.typed", "pipewarden.rules.yml", "pipewarden.rules.test.yml", "alertmanager.yml.example"} <= set(files)
    for name in files:
        assert any(fnmatch.fnmatch(name, pat) for pat in patterns), name
    assert alerts.RULE_FILE.is_file()
