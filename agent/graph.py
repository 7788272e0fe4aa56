"""The task graph of a pipeline: validation, dependency order, downstream sets.

Pure data: names in, names out. :mod:`agent.pipeline` builds it from the
decorated functions and the runner walks it.
"""

from __future__ import annotations

import difflib
import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from agent.errors import CycleError, UnknownDependencyError

__all__ = ["Graph", "find_cycle"]


@dataclass(frozen=True)
class Graph:
    """Tasks and the tasks each depends on, validated on construction.

    >>> g = Graph({"extract": (), "transform": ("extract",), "load": ("transform",)})
    >>> g.order
    ('extract', 'transform', 'load')
    >>> sorted(g.downstream("extract"))
    ['load', 'transform']

    Raises :class:`~agent.errors.UnknownDependencyError` when a task depends on
    a task the graph lacks and :class:`~agent.errors.CycleError` on a cycle.
    """

    deps: Mapping[str, tuple[str, ...]]
    pipeline: str = ""
    order: tuple[str, ...] = field(init=False)
    children: Mapping[str, tuple[str, ...]] = field(init=False)

    def __post_init__(self) -> None:
        deps = {name: tuple(d) for name, d in self.deps.items()}
        where = f" of pipeline {self.pipeline!r}" if self.pipeline else ""
        for name, ds in deps.items():
            for d in ds:
                if d not in deps:
                    hint = difflib.get_close_matches(d, list(deps), n=1)
                    fix = f"; did you mean {hint[0]!r}?" if hint else ""
                    raise UnknownDependencyError(
                        f"task {name!r}{where} depends on {d!r}, which is not a task{where}{fix} "
                        f"(tasks: {', '.join(sorted(deps))})",
                        task=name,
                        dependency=d,
                    )
        cycle = find_cycle(deps)
        if cycle:
            raise CycleError(
                f"tasks{where} form a cycle (each depends on the next): {' -> '.join(cycle)}; "
                "remove one of these dependencies",
                cycle=cycle,
            )
        children: dict[str, list[str]] = {name: [] for name in deps}
        for name, ds in deps.items():
            for d in ds:
                children[d].append(name)
        object.__setattr__(self, "deps", deps)
        object.__setattr__(self, "children", {k: tuple(v) for k, v in children.items()})
        object.__setattr__(self, "order", _topological(deps, children))

    def __len__(self) -> int:
        return len(self.deps)

    def __contains__(self, name: object) -> bool:
        return name in self.deps

    def downstream(self, name: str) -> set[str]:
        """Every task that depends on ``name``, directly or transitively (``name`` excluded)."""
        seen: set[str] = set()
        stack = list(self.children[name])
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                stack.extend(self.children[n])
        return seen

    def upstream(self, name: str) -> set[str]:
        """Every task ``name`` depends on, directly or transitively (``name`` excluded)."""
        seen: set[str] = set()
        stack = list(self.deps[name])
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                stack.extend(self.deps[n])
        return seen


def _topological(deps: Mapping[str, tuple[str, ...]], children: Mapping[str, list[str]]) -> tuple[str, ...]:
    # Kahn's algorithm, stable: among ready tasks the one declared first goes first.
    index = {n: i for i, n in enumerate(deps)}
    remaining = {n: len(set(d)) for n, d in deps.items()}
    out: list[str] = []
    heap = [(index[n], n) for n in deps if remaining[n] == 0]
    heapq.heapify(heap)
    while heap:
        _, n = heapq.heappop(heap)
        out.append(n)
        for c in dict.fromkeys(children[n]):
            remaining[c] -= 1
            if remaining[c] == 0:
                heapq.heappush(heap, (index[c], c))
    return tuple(out)


def find_cycle(deps: Mapping[str, Iterable[str]]) -> list[str]:
    """One cycle as a closed path (``['a', 'b', 'a']``), or ``[]``; unknown names are ignored."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(deps, white)
    for start in deps:
        if colour[start] != white:
            continue
        # Iterative DFS: recursion would overflow on long chains.
        path: list[str] = [start]
        iters = [iter(deps[start])]
        colour[start] = grey
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                colour[path.pop()] = black
                iters.pop()
                continue
            if nxt not in colour:
                continue
            if colour[nxt] == grey:
                # path holds dependants before their dependencies; report in "depends on" order.
                return [*path[path.index(nxt) :], nxt]
            if colour[nxt] == white:
                colour[nxt] = grey
                path.append(nxt)
                iters.append(iter(deps[nxt]))
    return []
