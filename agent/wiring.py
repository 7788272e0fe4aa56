"""Which output each task parameter receives: by name, renamed, one key of a dict, or many at once.

>>> from agent.pipeline import Pipeline
>>> pipe = Pipeline("wired")
>>> @pipe.task
... def extract() -> dict[str, list[int]]:
...     return {"orders": [1, 2], "refunds": [3]}
>>> @pipe.task(depends_on={"rows": Input("extract", key="orders")})
... def count(rows: list[int]) -> int:
...     return len(rows)
>>> @pipe.task(depends_on=["extract", "count"])
... def report(**upstream: object) -> list[str]:
...     return sorted(upstream)
>>> pipe.graph().order
('extract', 'count', 'report')

A parameter named like a task receives that task's output (the default).
``depends_on={"raw": "extract"}`` (or ``raw: Annotated[T, Input("extract")]``)
gives parameter ``raw`` the output of ``extract``; ``Input("extract", key="orders")``
gives it ``extract``'s output ``["orders"]``, and the task fails with one line
when that output is not a dict or lacks the key. A ``**upstream`` parameter
receives ``{task: output}`` of every task in ``depends_on`` that no named
parameter takes. Unknown tasks and cycles are refused when the task is declared
or the graph is built, as for any dependency.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agent.errors import DecorationError, TaskInputError

__all__ = ["Input", "annotated_sources", "evaluate", "parse_depends_on", "take", "task_name"]


@dataclass(frozen=True, slots=True)
class Input:
    """The source of one task parameter: the output of ``task`` (a name or the task function), or its ``key``.

    >>> Input("extract", key="orders")
    Input(task='extract', key='orders')
    """

    task: str
    key: str | None = None

    def __init__(self, task: str | Callable[..., Any], key: str | None = None) -> None:
        object.__setattr__(self, "task", task_name(task, "Input"))
        if key is not None and not isinstance(key, str):
            raise DecorationError(f"Input({self.task!r}, key=...) takes a string key — got {key!r}")
        object.__setattr__(self, "key", key)

    def describe(self) -> str:
        return f"{self.task}[{self.key!r}]" if self.key is not None else self.task


def task_name(ref: Any, where: str) -> str:
    """A task's name from its name or its (decorated) function."""
    if isinstance(ref, str) and ref:
        return ref
    if callable(ref):
        t = getattr(ref, "__pipewarden_task__", None)
        name = t.name if t is not None else getattr(ref, "__name__", None)
        if isinstance(name, str):
            return name
    raise DecorationError(f"{where} takes task names or task functions — got {ref!r}")


def parse_depends_on(depends_on: Any) -> tuple[tuple[str, ...], dict[str, Input]]:
    """(ordering-only task names, parameter -> Input) from ``depends_on``.

    It takes a name or task function, a list of them, a mapping ``{parameter: name | function | Input}``,
    or a list mixing names and such mappings.
    """
    if isinstance(depends_on, Mapping):
        items: list[Any] = [depends_on]
    elif isinstance(depends_on, str) or callable(depends_on):
        items = [depends_on]
    else:
        items = list(depends_on or ())
    names: list[str] = []
    sources: dict[str, Input] = {}
    for item in items:
        if isinstance(item, Mapping):
            for param, src in item.items():
                if not isinstance(param, str) or not param.isidentifier():
                    raise DecorationError(f"depends_on maps parameter names to tasks — got key {param!r}")
                sources[param] = src if isinstance(src, Input) else Input(task_name(src, "depends_on"))
        else:
            names.append(task_name(item, "depends_on"))
    return tuple(dict.fromkeys(names)), sources


def annotated_sources(fn: Callable[..., Any], task: str, sig: inspect.Signature) -> dict[str, Input]:
    """Parameters annotated ``Annotated[T, Input(...)]`` and their sources (``sig``: the signature of ``fn``).

    String annotations (``from __future__ import annotations``) are evaluated only
    when they mention ``Input``; one that cannot be is a DecorationError now, not a
    parameter silently left unwired.
    """
    out: dict[str, Input] = {}
    for p in sig.parameters.values():
        ann = p.annotation
        if isinstance(ann, str):
            if "Input" not in ann:
                continue
            try:
                ann = evaluate(fn, ann)
            except Exception as exc:
                raise DecorationError(
                    f"task {task!r}: the annotation {ann!r} of parameter {p.name!r} cannot be evaluated "
                    f"({type(exc).__name__}: {exc}); import what it names at module level"
                ) from None
        if typing.get_origin(ann) is not typing.Annotated:
            continue
        found = [m for m in ann.__metadata__ if isinstance(m, Input)]
        if len(found) > 1:
            raise DecorationError(
                f"task {task!r}: parameter {p.name!r} has {len(found)} Input(...) annotations; give one"
            )
        if found:
            out[p.name] = found[0]
    return out


def evaluate(fn: Any, annotation: str) -> Any:
    """A string annotation of ``fn`` evaluated as ``typing.get_type_hints`` would, closures included.

    A quoted annotation under ``from __future__ import annotations`` is a string in a string: evaluated twice.
    """
    value: Any = annotation
    for _ in range(2):
        if isinstance(value, str):
            value = eval(value, getattr(fn, "__globals__", {}), _closure(fn))
    return value


def _closure(fn: Any) -> dict[str, Any]:
    """Names a nested task function sees from the function that defined it."""
    code, cells = getattr(fn, "__code__", None), getattr(fn, "__closure__", None) or ()
    out: dict[str, Any] = {}
    for var, cell in zip(code.co_freevars if code else (), cells, strict=False):
        try:
            out[var] = cell.cell_contents
        except ValueError:  # an empty cell
            continue
    return out


def take(value: Any, source: Input, *, task: str, param: str) -> Any:
    """The part of an upstream ``value`` that ``source`` names; TaskInputError when a key cannot be taken."""
    if source.key is None:
        return value
    if isinstance(value, Mapping):
        try:
            return value[source.key]
        except KeyError:
            pass
        keys = [str(k) for k in list(value)[:10]]
        more = ", ..." if len(value) > 10 else ""
        why = f"has no such key (keys: {', '.join(map(repr, keys))}{more})"
    else:
        why = f"is a {type(value).__name__}, not a dict"
    raise TaskInputError(
        f"parameter {param!r} of task {task!r} takes key {source.key!r} of the output of {source.task!r}, which {why}",
        task=task,
        source=source.task,
        key=source.key,
    )
