"""Building checks from a declaration (the ``checks:`` list of pipewarden.yml).

>>> [c.name for c in from_config([{"unique": {"key": "order_id"}}, {"row_count": {"min": 1}}])]
['unique(order_id)', 'row_count']

Each entry is ``{name: {argument: value, ...}}``, ``{name: value}`` (the first
argument, e.g. ``{unique: order_id}``) or a bare ``name``. The whole list is
validated before anything is built, and every problem is reported at once in
one :class:`~checks.errors.CheckConfigError`, each naming its key path.
"""

from __future__ import annotations

import datetime as dt
import difflib
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from checks.base import Check
from checks.completeness import NotNull
from checks.drift import METHODS, Drift
from checks.duplication import NoDuplicateRows, Unique, UniqueAcrossRuns
from checks.errors import CheckConfigError
from checks.freshness import Freshness, parse_duration
from checks.gx import GxSuite
from checks.loss import Loss, Reconcile, RowCount
from checks.schema import Schema
from checks.volume import Volume
from checks.yamlsafe import MAX_VALUES, YamlError, expanded_size, load_yaml_file

__all__ = ["CHECKS", "from_config", "load_checks"]

#: Check names usable in a declaration, and the class each builds.
CHECKS: dict[str, type[Check]] = {
    "completeness": NotNull,
    "drift": Drift,
    "freshness": Freshness,
    "gx_suite": GxSuite,
    "loss": Loss,
    "no_duplicate_rows": NoDuplicateRows,
    "not_null": NotNull,
    "reconcile": Reconcile,
    "row_count": RowCount,
    "schema": Schema,
    "unique": Unique,
    "unique_across_runs": UniqueAcrossRuns,
    "volume": Volume,
}

_CHOICES: dict[tuple[str, str], Sequence[str]] = {
    ("*", "severity"): ("warn", "fail"),
    ("*", "on_error"): ("warn", "fail"),
    ("drift", "method"): METHODS,
}


_CONVERTERS: dict[tuple[str, str], Callable[[Any], Any]] = {
    ("freshness", "max_age"): parse_duration,
}


def _choices(check: str, arg: str) -> Sequence[str] | None:
    return _CHOICES.get((check, arg)) or _CHOICES.get(("*", arg))


def _params(cls: type[Check]) -> dict[str, inspect.Parameter]:
    sig = inspect.signature(cls.__init__)
    return {
        n: p
        for n, p in sig.parameters.items()
        if n != "self" and p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    }


def _hints(cls: type[Check]) -> dict[str, Any]:
    import pandas as pd

    from checks.profile import Profile

    ns = {
        "pd": pd,
        "Profile": Profile,
        "dt": dt,
        "Path": Path,
        "Sequence": Sequence,
        "Mapping": Mapping,
        "Any": Any,
    }
    try:
        return typing.get_type_hints(cls.__init__, globalns=ns | vars(inspect.getmodule(cls)))
    except Exception:  # a hint we cannot resolve is simply not type-checked
        return {}


def _type_ok(value: Any, hint: Any) -> bool:
    if hint is Any or hint is None:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is not None:
        if origin in (Sequence, list, tuple, typing.Sequence):
            args = typing.get_args(hint)
            return (
                isinstance(value, list | tuple) and all(_type_ok(v, args[0]) for v in value)
                if args
                else isinstance(value, list | tuple)
            )
        if origin in (Mapping, dict, typing.Mapping):
            return isinstance(value, Mapping)
        return True
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _type_name(hint: Any) -> str:
    text = str(hint).replace("typing.", "").replace("collections.abc.", "")
    return text.replace("NoneType", "None").replace("<class '", "").replace("'>", "")


def _entries(spec: Any, where: str) -> list[tuple[str, Any]]:
    if isinstance(spec, Mapping):
        if "checks" in spec and len(spec) == 1:
            return _entries(spec["checks"], "checks")
        return [(where, {k: v}) for k, v in spec.items()]
    if isinstance(spec, list | tuple):
        return [(f"{where}[{i}]", e) for i, e in enumerate(spec)]
    raise CheckConfigError([f"{where} must be a list of checks — got {type(spec).__name__}"])


def _validate(path: str, where: str, entry: Any, problems: list[str]) -> Check | None:
    if isinstance(entry, str):
        name, args = entry, None
    elif isinstance(entry, Mapping) and len(entry) == 1:
        name, args = next(iter(entry.items()))
    else:
        problems.append(
            f"{path}: {where} must be a check name or a mapping of one check name to its "
            f"arguments, e.g. {{unique: {{key: order_id}}}} — got {entry!r}"
        )
        return None
    cls = CHECKS.get(str(name))
    if cls is None:
        close = difflib.get_close_matches(str(name), CHECKS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        problems.append(f"{path}: {where} unknown check {name!r}{hint} Known checks are: {', '.join(sorted(CHECKS))}")
        return None
    here = f"{where}.{name}"
    params = _params(cls)
    hints = _hints(cls)
    kwargs: dict[str, Any]
    if args is None:
        kwargs = {}
    elif isinstance(args, Mapping):
        kwargs = {str(k): v for k, v in args.items()}
    else:
        first = next(
            (n for n, p in params.items() if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD),
            None,
        )
        if first is None:
            problems.append(f"{path}: {here} takes a mapping of arguments ({', '.join(params)}) — got {args!r}")
            return None
        kwargs = {first: args}
    ok = True
    for k, v in kwargs.items():
        if k not in params:
            close = difflib.get_close_matches(k, params, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(f"{path}: {here}.{k} is not an argument of {name}{hint} Arguments are: {', '.join(params)}")
            ok = False
            continue
        choices = _choices(str(name), k)
        if choices is not None:
            values = v if isinstance(v, list | tuple) and k == "method" else [v]
            bad = [x for x in values if x not in choices]
            if bad:
                problems.append(f"{path}: {here}.{k} must be one of {', '.join(choices)} — got {bad[0]!r}")
                ok = False
                continue
        convert = _CONVERTERS.get((str(name), k))
        if convert is not None:
            try:
                convert(v)
            except ValueError as exc:
                problems.append(f"{path}: {here}.{k}: {exc}")
                ok = False
            continue
        if k in hints and not _type_ok(v, hints[k]):
            problems.append(f"{path}: {here}.{k} must be {_type_name(hints[k])} — got {v!r}")
            ok = False
    missing = [n for n, p in params.items() if p.default is inspect.Parameter.empty and n not in kwargs]
    for n in missing:
        problems.append(f"{path}: {here}.{n} is required")
        ok = False
    if not ok:
        return None
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        problems.append(f"{path}: {here}: {exc}")
        return None


def from_config(spec: Any, path: str | Path = "pipewarden.yml") -> list[Check]:
    """Checks built from a declaration; a CheckConfigError lists every problem with its key path.

    A declaration that expands to more than :data:`checks.yamlsafe.MAX_VALUES`
    values through shared (aliased) lists or dicts is refused before it is
    walked: ``yaml.safe_load`` accepts a "billion laughs" document that would
    otherwise take minutes and gigabytes to validate.
    """
    where = str(path)
    try:
        size = expanded_size(spec)
    except YamlError as exc:
        raise CheckConfigError([f"{where}: {exc}"], path=where) from None
    if size > MAX_VALUES:
        raise CheckConfigError(
            [
                f"{where}: the check declaration expands to more than {MAX_VALUES} values through "
                'repeated aliases (a "billion laughs" document?); write the values out'
            ],
            path=where,
        )
    problems: list[str] = []
    try:
        entries = _entries(spec, "checks")
    except CheckConfigError as exc:
        raise CheckConfigError([f"{where}: {p}" for p in exc.problems], path=where) from None
    built = [_validate(where, w, e, problems) for w, e in entries]
    if problems:
        raise CheckConfigError(problems, path=where)
    return [c for c in built if c is not None]


def load_checks(path: str | Path) -> list[Check]:
    """Checks declared in a YAML file (its ``checks:`` list, or the list itself), read with the bounded loader.

    Errors name the file, and the line for YAML problems (:class:`checks.yamlsafe.YamlError`).
    """
    data = load_yaml_file(path)
    if isinstance(data, Mapping) and "checks" in data:  # a pipewarden.yml has other sections too
        data = data["checks"]
    return from_config(data, path=path)
