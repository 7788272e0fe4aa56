"""Typed run parameters: what ``-p key=value``, the daemon's API and ``pipewarden.yml`` give becomes a value
of the type the tasks ask for.

>>> import datetime as dt
>>> from agent.pipeline import Pipeline
>>> pipe = Pipeline("report", params={"repos": ["acme/api"], "day": None})
>>> @pipe.task
... def fetch(repos: list[str], day: dt.date | None) -> int:
...     return len(repos)
>>> resolve_params(pipe, {"repos": "acme/api,acme/web", "day": "2025-01-31"})[0]["repos"]
['acme/api', 'acme/web']
>>> resolve_params(pipe, {"day": "tomorrow"})                         # doctest: +ELLIPSIS
Traceback (most recent call last):
agent.errors.ParamError: run parameter 'day' of pipeline 'report' got 'tomorrow', which is not ...

The type of a parameter is the annotation of the task parameters that receive
it (tasks that annotate it must agree; a task mapped over it, ``map=``, annotates one
item, so ``files: str`` there makes the parameter a ``list[str]``), else the type of its default in
``Pipeline(params=...)``. pydantic's ``TypeAdapter`` converts: lists, tuples and
sets (comma-separated text or JSON), dates and datetimes (ISO), enums,
``Literal``, dataclasses, pydantic models and ``TypedDict`` (JSON objects).
pydantic is imported only when a value has to be converted. A value that does
not convert is a :class:`~agent.errors.ParamError` naming the parameter, what
was given and what is allowed, raised before anything runs.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime as dt
import decimal
import enum
import pathlib
import types
import typing
import uuid
from typing import TYPE_CHECKING, Any

from agent.errors import ConfigError, ParamError

if TYPE_CHECKING:
    from agent.pipeline import Pipeline

__all__ = ["describe", "param_types", "resolve_params"]

#: User parameters beside the declared ones: the triggering file.
GIVEN_BUILTINS = ("path",)
_SCALARS = (bool, int, float, str, dt.datetime, dt.date, dt.time, dt.timedelta, decimal.Decimal, uuid.UUID)
_SEQUENCES = (list, tuple, set, frozenset)
_UNIONS = (typing.Union, types.UnionType)
#: (pipeline, its graph when the types were read, the types); rebuilt when the graph is.
_CACHE_ATTR = "_pipewarden_param_types"


def param_types(pipeline: Pipeline) -> dict[str, Any]:
    """The type of each user run parameter (declared ones and ``path``); ``Any`` when nothing says.

    Raises ConfigError when two tasks annotate one parameter differently, or an
    annotation cannot be resolved.
    """
    graph = pipeline.graph()
    cached = getattr(pipeline, _CACHE_ATTR, None)
    if cached is not None and cached[0] is graph:
        return dict(cached[1])
    seen: dict[str, tuple[str, Any]] = {}
    for task in pipeline.tasks.values():
        for name in task.parameters:
            if name not in pipeline.params and name not in GIVEN_BUILTINS:
                continue
            hint = _annotation(task.fn, name, task.name, pipeline.name)
            if hint is None:
                continue
            if name == task.map:  # a mapped task's parameter is annotated with the type of one item
                hint = list[hint]  # type: ignore[valid-type]
            if name in seen and seen[name][1] != hint:
                other, first = seen[name]
                raise ConfigError(
                    f"run parameter {name!r} of pipeline {pipeline.name!r} is annotated {type_name(first)} in task "
                    f"{other!r} and {type_name(hint)} in task {task.name!r}; one run has one value: annotate them alike"
                )
            seen.setdefault(name, (task.name, hint))
    types = {name: seen[name][1] if name in seen else _type_of(default) for name, default in pipeline.params.items()}
    for name in GIVEN_BUILTINS:
        types[name] = seen[name][1] if name in seen else Any
    setattr(pipeline, _CACHE_ATTR, (graph, types))
    return dict(types)


def resolve_params(
    pipeline: Pipeline, given: collections.abc.Mapping[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the run's parameters, typed: defaults overlaid with ``given``; the same as JSON values, to store).

    Raises ConfigError for a parameter the pipeline does not declare and
    :class:`~agent.errors.ParamError` for a value that does not convert.
    """
    given = dict(given or {})
    unknown = [k for k in given if k not in pipeline.params and k not in GIVEN_BUILTINS]
    if unknown:
        declared = ", ".join(sorted(pipeline.params)) or "none"
        raise ConfigError(
            f"pipeline {pipeline.name!r} has no run parameter {', '.join(map(repr, unknown))} "
            f"(declared: {declared}; built-in: path, logical_date); declare it with "
            f"Pipeline({pipeline.name!r}, params={{{unknown[0]!r}: default}})"
        )
    types = param_types(pipeline) if given else {}
    typed, stored = dict(pipeline.params), {k: _plain(v) for k, v in pipeline.params.items()}
    for name, value in given.items():
        typed[name], stored[name] = convert(pipeline, name, value, types[name])
    return typed, stored


def convert(pipeline: Pipeline, name: str, value: Any, tp: Any) -> tuple[Any, Any]:
    """(``value`` as a ``tp``, the same as a JSON value); ParamError naming ``name`` when it does not convert."""
    default = pipeline.params.get(name)
    if tp is Any or tp is object or (value is None and default is None):
        return value, value
    if (type(value) is tp and tp in _SCALARS) or (value is default and value is not None):
        return value, _plain(value)  # already the type (library callers): pydantic is not needed
    from pydantic import ValidationError

    adapter = _adapter(pipeline, name, tp)
    try:
        out = (
            _from_text(adapter, value, tp)
            if isinstance(value, str) and tp is not str
            else adapter.validate_python(value)
        )
    except ValidationError as exc:
        raise _param_error(pipeline, name, value, tp, exc) from None
    if isinstance(out, dt.datetime) and out.tzinfo is None:
        out = out.replace(tzinfo=dt.UTC)  # like the logical date: a datetime without zone is UTC
    return out, adapter.dump_python(out, mode="json")


def _adapter(pipeline: Pipeline, name: str, tp: Any) -> Any:
    from pydantic import ConfigDict, PydanticUserError, TypeAdapter

    try:
        try:  # numbers given for text (YAML's `region: 12`) are the text they look like
            return TypeAdapter(tp, config=ConfigDict(coerce_numbers_to_str=True))
        except PydanticUserError:  # models and dataclasses carry their own configuration
            return TypeAdapter(tp)
    except Exception as exc:  # a type pydantic cannot build a validator for
        raise ConfigError(
            f"run parameter {name!r} of pipeline {pipeline.name!r} is a {type_name(tp)}, which pipewarden cannot "
            f"convert values to ({type(exc).__name__}: {str(exc).splitlines()[0]}); annotate it with a plain type "
            "(str, int, float, bool, date, datetime, list[...], an Enum, a Literal, a dataclass or a pydantic model)"
        ) from None


def _from_text(adapter: Any, text: str, tp: Any) -> Any:
    """A value from text: comma-separated or JSON for sequences, JSON for objects, else pydantic's lax parsing."""
    from pydantic import ValidationError

    attempts = [lambda: adapter.validate_python(text), lambda: adapter.validate_json(text)]
    if text.lstrip()[:1] in ("{", "["):  # JSON first, so its error is the one reported
        attempts.reverse()
    elif _is_sequence(tp):
        attempts.insert(
            0, lambda: adapter.validate_python([p.strip() for p in text.split(",")] if text.strip() else [])
        )
    first: ValidationError | None = None
    for attempt in attempts:
        try:
            return attempt()
        except ValidationError as exc:
            first = first or exc
    assert first is not None
    raise first


def _param_error(pipeline: Pipeline, name: str, value: Any, tp: Any, exc: Any) -> ParamError:
    err = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in err.get("loc", ()) if p != "[key]")
    why = str(err.get("msg", "")).removeprefix("Value error, ")
    allowed = describe(tp)
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    return ParamError(
        f"run parameter {name!r} of pipeline {pipeline.name!r} got {shown}, which is not {_article(type_name(tp))} "
        f"({f'at {where}: ' if where else ''}{why}); allowed: {allowed}",
        param=name,
        value=value,
        allowed=allowed,
    )


def describe(tp: Any) -> str:
    """What values of ``tp`` look like, for error messages (``describe(dt.date)``: an ISO date such as 2025-01-31)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return describe(args[0])
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in _UNIONS:
        parts = [describe(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" or null" if type(None) in args else "")
    if origin in _SEQUENCES or origin in (typing.Sequence, collections.abc.Sequence, collections.abc.Set):
        item = describe(args[0]) if args else "text"
        return f"a list, comma-separated (a,b) or JSON ([...]), of {_plural(item)}"
    if origin in (dict, collections.abc.Mapping) or tp is dict:
        return "a JSON object"
    if isinstance(tp, type):
        if issubclass(tp, enum.Enum):
            return "one of " + ", ".join(repr(m.value) for m in tp)
        if hasattr(tp, "model_fields") or dataclasses.is_dataclass(tp) or typing.is_typeddict(tp):
            fields = _fields(tp)
            return "a JSON object" + (f" with fields {', '.join(fields)}" if fields else "")
        for kind, text in _DESCRIPTIONS:
            if issubclass(tp, kind):
                return text
    return _article(type_name(tp))


_DESCRIPTIONS: tuple[tuple[type, str], ...] = (
    (bool, "true or false (yes/no, on/off, 1/0)"),
    (int, "a whole number such as 42"),
    (float, "a number such as 0.5"),
    (decimal.Decimal, "a number such as 0.5"),
    (str, "any text"),
    (dt.datetime, "an ISO datetime such as 2025-01-31T06:00:00+00:00 (without a zone: UTC)"),
    (dt.date, "an ISO date such as 2025-01-31"),
    (dt.time, "an ISO time such as 06:00:00"),
    (dt.timedelta, "a duration in seconds or ISO 8601 (PT15M)"),
    (pathlib.PurePath, "a path"),
)


def type_name(tp: Any) -> str:
    """``list[str]``, ``date``, ``Region``: how a type reads in a message."""
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "").replace("datetime.", "").replace("pathlib.", "")


def _article(name: str) -> str:
    return f"an {name}" if name[:1].lower() in "aeiou" else f"a {name}"


def _plural(text: str) -> str:
    return text.removeprefix("a ").removeprefix("an ")


def _fields(tp: Any) -> list[str]:
    if hasattr(tp, "model_fields"):
        return list(tp.model_fields)
    if dataclasses.is_dataclass(tp):
        return [f.name for f in dataclasses.fields(tp)]
    return list(getattr(tp, "__annotations__", {}))


def _is_sequence(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _is_sequence(typing.get_args(tp)[0])
    if origin in _UNIONS:
        return any(_is_sequence(a) for a in typing.get_args(tp))
    return tp in _SEQUENCES or origin in _SEQUENCES or origin in (collections.abc.Sequence, collections.abc.Set)


def _type_of(default: Any) -> Any:
    """The type a parameter's default implies when no task annotates it (``Any``: taken as given)."""
    if default is None:
        return Any
    if isinstance(default, pathlib.PurePath):
        return pathlib.Path
    if isinstance(default, (*_SCALARS, enum.Enum)):
        return type(default)
    if isinstance(default, _SEQUENCES):
        kinds = {type(v) for v in default}
        item = kinds.pop() if len(kinds) == 1 and issubclass(next(iter(kinds)), _SCALARS) else Any
        container = type(default) if type(default) in _SEQUENCES else list
        return types.GenericAlias(container, (item, ...) if container is tuple else (item,))
    if isinstance(default, dict):
        return dict[str, Any]
    if hasattr(type(default), "model_fields") or dataclasses.is_dataclass(default):
        return type(default)
    return Any


def _annotation(fn: Any, name: str, task: str, pipeline: str) -> Any:
    """The resolved annotation of parameter ``name`` of ``fn``; None when it has none (or ``Any``)."""
    import inspect

    from agent.wiring import evaluate

    try:
        raw = inspect.signature(fn).parameters[name].annotation
    except (TypeError, ValueError, KeyError):
        return None
    if raw is inspect.Parameter.empty:
        return None
    if isinstance(raw, str):  # `from __future__ import annotations`
        try:
            raw = evaluate(fn, raw)
        except Exception as exc:
            raise ConfigError(
                f"task {task!r} of pipeline {pipeline!r}: the annotation {raw!r} of run parameter {name!r} cannot be "
                f"resolved ({type(exc).__name__}: {exc}); import what it names at module level"
            ) from None
    if typing.get_origin(raw) is typing.Annotated:
        raw = typing.get_args(raw)[0]
    return None if raw is Any or raw is object else raw


def _plain(value: Any) -> Any:
    """A value already of its type, as JSON holds it (dates as ISO text, enums as their value)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    return value
