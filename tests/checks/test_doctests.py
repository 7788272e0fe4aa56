"""The runnable examples in the checks package's docstrings."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import checks

MODULES = sorted(m.name for m in pkgutil.iter_modules(checks.__path__, "checks."))


@pytest.mark.parametrize("name", ["checks", *MODULES])
def test_docstring_examples_run(name: str) -> None:
    """Every docstring example in the module gives the output it shows."""
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
