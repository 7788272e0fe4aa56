"""Reading YAML that cannot take the machine down: bounded aliases, errors with file and line.

``yaml.safe_load`` accepts a "billion laughs" document: a kilobyte of anchors
and aliases that names billions of values. PyYAML builds it quickly, as a graph
of shared objects, so the danger comes later, from whatever walks it: a
validator, or the ``repr`` of one bad value in an error message, spends minutes
and gigabytes. :func:`load_yaml` refuses such a document before anything walks
it, by counting what it expands to (each alias at its full size) without
expanding it; :func:`expanded_size` does the same for data already loaded.

>>> load_yaml("checks:\\n  - unique: {key: order_id}\\n")
{'checks': [{'unique': {'key': 'order_id'}}]}
>>> load_yaml("a: &a [x, x]\\nb: [*a, *a, *a]\\n", max_values=8)
Traceback (most recent call last):
...
checks.yamlsafe.YamlError: <string>:2: the document expands to more than 8 values through its aliases ...

This module is pipewarden's one YAML reader: ``checks.from_config`` guards with
it, and ``pipewarden.yml`` is read through it. It lives in ``checks`` because
``checks`` imports nothing else of pipewarden's, and the agent may import checks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import IO, Any, TypeVar

import yaml

from checks.errors import CheckConfigError

__all__ = ["MAX_VALUES", "YamlError", "compose_yaml", "expanded_size", "load_yaml", "load_yaml_file"]

#: Values a document may expand to, every alias counted at its full size. A
#: large hand-written configuration has a few thousand.
MAX_VALUES = 100_000

T = TypeVar("T")


class YamlError(CheckConfigError):
    """A YAML document cannot be read: a syntax error, or too large once its aliases are expanded.

    ``path`` and ``line`` (1-based, or None) say where.
    """

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        super().__init__([message], path=path)
        self.line = line


def load_yaml(
    source: str | bytes | IO[str] | IO[bytes], *, path: str = "<string>", max_values: int = MAX_VALUES
) -> Any:
    """Parse one YAML document with the safe loader; YamlError for bad syntax or an alias bomb."""
    return _read(source, path, max_values, lambda loader: loader.get_single_data())


def compose_yaml(
    source: str | bytes | IO[str] | IO[bytes], *, path: str = "<string>", max_values: int = MAX_VALUES
) -> yaml.Node | None:
    """The node graph of one document (every node with its line), checked as :func:`load_yaml` checks it.

    For readers that report where a value was written; None for an empty document.
    """

    def compose(loader: _BoundedLoader) -> yaml.Node | None:
        node = loader.get_single_node()
        if node is not None:
            loader.check(node)
        return node

    return _read(source, path, max_values, compose)


def _read(
    source: str | bytes | IO[str] | IO[bytes], path: str, max_values: int, step: Callable[[_BoundedLoader], T]
) -> T:
    loader = _BoundedLoader(source)
    loader.max_values = max_values
    loader.where = path
    try:
        return step(loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise YamlError(
            f"{path}:{line}: not valid YAML: {what}" if line else f"{path}: not valid YAML: {what}",
            path=path,
            line=line,
        ) from None
    except yaml.YAMLError as exc:
        raise YamlError(f"{path}: not valid YAML: {exc}", path=path) from None
    except RecursionError:
        raise YamlError(f"{path}: the document is nested too deeply to read", path=path) from None
    finally:
        loader.dispose()


def load_yaml_file(path: str | os.PathLike[str], *, max_values: int = MAX_VALUES) -> Any:
    """:func:`load_yaml` of a file; its name is in every error."""
    with open(path, "rb") as f:
        return load_yaml(f, path=str(path), max_values=max_values)


def expanded_size(data: Any, limit: int = MAX_VALUES) -> int:
    """How many values ``data`` holds once every shared list or dict is counted where it appears.

    Counted without walking the expansion (each distinct container once), and
    stopped early past ``limit``: the answer is then some number above ``limit``.
    Raises YamlError for a structure that contains itself.
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack:
        obj, done = stack.pop()
        key = id(obj)
        children = _children(obj)
        if children is None or (key in sizes and not done):
            continue
        if done:
            on_path.discard(key)
            sizes[key] = min(limit + 1, 1 + sum(sizes.get(id(c), 1) for c in children))
            continue
        if key in on_path:
            raise YamlError("the data contains itself (a recursive alias)")
        on_path.add(key)
        stack.append((obj, True))
        for child in children:
            if id(child) in on_path:
                raise YamlError("the data contains itself (a recursive alias)")
            stack.append((child, False))
    return sizes.get(id(data), 1)


def _children(obj: Any) -> list[Any] | None:
    if isinstance(obj, Mapping):
        return [*obj.keys(), *obj.values()]
    if isinstance(obj, list | tuple):
        return list(obj)
    return None


class _BoundedLoader(yaml.SafeLoader):
    """The safe loader, refusing a document whose aliases expand it past ``max_values``."""

    max_values = MAX_VALUES
    where = "<string>"

    def construct_document(self, node: yaml.Node) -> Any:
        self.check(node)
        return super().construct_document(node)

    def check(self, root: yaml.Node) -> None:
        """YamlError when ``root`` expands past :attr:`max_values` or contains itself."""
        # Sizes of the node graph, post-order and iterative; an alias is the same node object seen
        # again, so each distinct node is summed once and a bomb costs what its text costs.
        limit = self.max_values
        sizes: dict[int, int] = {}
        on_path: set[int] = set()
        stack: list[tuple[yaml.Node, bool]] = [(root, False)]
        while stack:
            node, done = stack.pop()
            key = id(node)
            if not isinstance(node, yaml.CollectionNode):
                continue
            if done:
                on_path.discard(key)
                size = 1 + sum(sizes.get(id(c), 1) for c in _node_children(node))
                if size > limit:
                    line = node.start_mark.line + 1
                    raise YamlError(
                        f"{self.where}:{line}: the document expands to more than {limit:,} values "
                        'through its aliases (a "billion laughs" document?); write the values out, '
                        "or use fewer nested aliases",
                        path=self.where,
                        line=line,
                    )
                sizes[key] = size
                continue
            if key in sizes:
                continue
            if key in on_path:
                line = node.start_mark.line + 1
                raise YamlError(
                    f"{self.where}:{line}: an alias refers to the value that contains it", path=self.where, line=line
                )
            on_path.add(key)
            stack.append((node, True))
            stack.extend((c, False) for c in _node_children(node))


def _node_children(node: yaml.CollectionNode) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return list(node.value)
