"""Checks declared in configuration; errors name their key path."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from checks import CheckConfigError, Drift, Unique, from_config

YAML = """
checks:
  - unique: {key: order_id}
  - drift: {columns: [amount], method: psi}
  - row_count: {min: 1}
  - no_duplicate_rows
  - not_null: [amount, country]
  - freshness: {column: created_at, max_age: 2h}
  - volume: {min_history: 3}
"""


def test_builds_checks_from_yaml() -> None:
    """A YAML checks list builds the declared checks with their arguments."""
    checks = from_config(yaml.safe_load(YAML))
    assert [c.name for c in checks] == [
        "unique(order_id)",
        "drift(amount)",
        "row_count",
        "no_duplicate_rows",
        "not_null(amount,country)",
        "freshness(created_at)",
        "volume",
    ]
    assert isinstance(checks[0], Unique) and isinstance(checks[1], Drift)
    assert checks[1].methods == ("psi",)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            [{"unique": {"key": "id"}}, {"row_count": {}}, {"drift": {"method": "pci"}}],
            "pipewarden.yml: checks[2].drift.method must be one of psi, ks, wasserstein, js, chi2 — got 'pci'",
        ),
        (
            [{"uniq": "id"}],
            "pipewarden.yml: checks[0] unknown check 'uniq'; did you mean 'unique'?",
        ),
        ([{"unique": {"kye": "id"}}], "checks[0].unique.kye is not an argument of unique"),
        ([{"unique": {}}], "checks[0].unique.key is required"),
        ([{"row_count": {"min": "one"}}], "checks[0].row_count.min must be int | None — got 'one'"),
        (
            [{"unique": {"key": "id", "severity": "loud"}}],
            "checks[0].unique.severity must be one of warn, fail",
        ),
        (
            [{"freshness": {"column": "t", "max_age": "soon"}}],
            "checks[0].freshness.max_age: cannot read",
        ),
        ([{"loss": {"max_loss": 5}}], "checks[0].loss: loss max_loss is a fraction"),
        ([{"unique": "a", "row_count": {}}], "checks[0] must be a check name or a mapping of one"),
        ({"unique": {"kye": 1}}, "pipewarden.yml: checks.unique.kye is not an argument"),
        ("unique", "checks must be a list of checks"),
    ],
)
def test_errors_name_the_key_path(spec, message: str) -> None:
    """Each problem names its key path, what was found and what is allowed."""
    with pytest.raises(CheckConfigError) as info:
        from_config(spec)
    assert any(message in p for p in info.value.problems), info.value.problems


def test_all_problems_reported_at_once() -> None:
    """Every problem of a declaration is in one error, which is also a ValueError."""
    spec = [{"uniq": 1}, {"unique": {}}, {"drift": {"method": ["ks", "kl"]}}]
    with pytest.raises(ValueError) as info:
        from_config(spec, path="conf/p.yml")
    err = info.value
    assert isinstance(err, CheckConfigError) and err.path == "conf/p.yml"
    assert len(err.problems) == 3
    assert all(p.startswith("conf/p.yml: checks[") for p in err.problems)


def test_checks_package_imports_no_agent_scipy_or_gx() -> None:
    """Importing checks (config included) imports neither agent, scipy nor great_expectations."""
    code = (
        "import sys, checks, checks.config; "
        "print([m for m in ('agent', 'scipy', 'great_expectations') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]),
    )
    assert out.stdout.strip() == "[]"
