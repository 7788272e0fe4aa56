"""The checks package: light to import, and its public names stay what they say."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _fresh_python(code: str) -> str:
    """What ``code`` prints in a fresh interpreter, so no earlier import in this session counts."""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout


def _modules_after(statement: str) -> set[str]:
    return set(
        _fresh_python(f"import sys\n{statement}\nprint(' '.join(sorted(m.split('.')[0] for m in sys.modules)))").split()
    )


@pytest.mark.parametrize(
    "statement",
    [
        "import checks.result, checks.base",
        "from agent import monitor",
    ],
)
def test_hot_path_modules_do_not_import_pandas(statement: str) -> None:
    """The records and the check protocol, and so @monitor, import without pandas, scipy or GX."""
    loaded = _modules_after(statement)
    assert not loaded & {"pandas", "scipy", "great_expectations", "numpy"}


@pytest.mark.parametrize("name", ["drift", "completeness", "profile", "schema", "freshness", "volume"])
def test_checks_named_like_their_module_stay_functions(name: str) -> None:
    """After its submodule is imported, checks.<name> is still the public function, not the module."""
    code = (
        "import importlib, sys, types\n"
        "import checks\n"
        f"importlib.import_module('checks.{name}')\n"
        f"value = getattr(checks, {name!r})\n"
        "print(callable(value) and not isinstance(value, types.ModuleType)"
        f" and sys.modules['checks.{name}'] is not value)"
    )
    assert _fresh_python(code).strip() == "True"


def test_unknown_name_is_an_attribute_error_naming_it() -> None:
    """A misspelt check name fails with AttributeError that names it."""
    import checks

    with pytest.raises(AttributeError, match="uniqe"):
        checks.uniqe  # noqa: B018


@pytest.mark.parametrize(
    "statement",
    [
        "import checks, agent; checks.run_checks, checks.as_source, checks.unique, checks.drift, checks.profile",
        "import checks.stream, checks.source, checks.keyset, checks.drift_stream",
    ],
)
def test_reading_tables_in_batches_imports_no_dask_scipy_or_dataset(statement: str) -> None:
    """The stream machinery imports dask, scipy and pyarrow.dataset only when such an input arrives."""
    loaded = set(_fresh_python(f"import sys\n{statement}\nprint(' '.join(sorted(sys.modules)))").split())
    assert not loaded & {"dask", "distributed", "scipy", "pyarrow.dataset", "great_expectations"}
