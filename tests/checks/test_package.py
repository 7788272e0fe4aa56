"""The checks package: light to import, and its public names stay what they say."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _modules_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize("statement", [
    "import checks.result, checks.base",
    "from agent import monitor",
])
def test_hot_path_modules_do_not_import_pandas(statement: str) -> None:
    """The records and the check protocol, and so @monitor, import without pandas, scipy or GX."""
    loaded = _modules_after(statement)
    assert not loaded & {"pandas", "scipy", "great_expectations", "numpy"}


@pytest.mark.parametrize("name", ["drift", "completeness", "profile", "schema", "freshness", "volume"])
def test_checks_named_like_their_module_stay_functions(name: str) -> None:
    """After its submodule is imported, checks.<name> is still the public function, not the module."""
    import importlib

    import checks

    importlib.import_module(f"checks.{name}" if name != "completeness" else "checks.completeness")
    value = getattr(checks, name)
    assert callable(value) and not isinstance(value, types.ModuleType)
    assert sys.modules[f"checks.{name}"] is not value


def test_unknown_name_is_an_attribute_error_naming_it() -> None:
    """A misspelt check name fails with AttributeError that names it."""
    import checks

    with pytest.raises(AttributeError, match="uniqe"):
        checks.uniqe  # noqa: B018
