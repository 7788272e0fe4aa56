"""Graph building and validation: named errors that say which tasks."""

from __future__ import annotations

from typing import Any

import pytest

from agent.errors import CycleError, DecorationError, DuplicateTaskError, UnknownDependencyError
from agent.graph import Graph, find_cycle
from agent.pipeline import Pipeline


def test_order_is_dependency_order_and_stable() -> None:
    """Tasks come in dependency order, ties in declaration order."""
    g = Graph({"a": (), "c": ("a",), "b": ("a",), "d": ("b", "c")})
    assert g.order == ("a", "c", "b", "d")
    assert g.downstream("a") == {"b", "c", "d"}
    assert g.upstream("d") == {"a", "b", "c"}


def test_cycle_error_lists_the_cycle() -> None:
    """A cycle raises CycleError whose .cycle is the closed path."""
    with pytest.raises(CycleError) as err:
        Graph({"a": ("c",), "b": ("a",), "c": ("b",)}, pipeline="p")
    assert err.value.cycle[0] == err.value.cycle[-1]
    assert set(err.value.cycle) == {"a", "b", "c"}
    assert "a -> c -> b -> a" in str(err.value)


def test_find_cycle_handles_long_chains() -> None:
    """Cycle detection is iterative: a 10,000-task chain does not overflow the stack."""
    deps = {f"t{i}": (f"t{i - 1}",) if i else () for i in range(10_000)}
    assert find_cycle(deps) == []
    assert len(Graph(deps).order) == 10_000


def test_unknown_dependency_names_task_and_dependency() -> None:
    """depends_on a missing task raises UnknownDependencyError with a suggestion."""
    pipe = Pipeline("p")

    @pipe.task
    def extract() -> int:
        return 1

    @pipe.task(depends_on=["extrct"])
    def load() -> None: ...

    with pytest.raises(UnknownDependencyError) as err:
        pipe.graph()
    assert (err.value.task, err.value.dependency) == ("load", "extrct")
    assert "did you mean 'extract'" in str(err.value)


def test_unknown_parameter_is_an_error_unless_it_has_a_default() -> None:
    """A parameter that is neither a task nor a run parameter fails at build time; a default makes it fine."""
    pipe = Pipeline("p")

    @pipe.task
    def extract(limit: int = 10) -> int:
        return limit

    @pipe.task
    def load(extract: int, region: str) -> None: ...

    with pytest.raises(UnknownDependencyError, match=r"'region'.*neither a task"):
        pipe.graph()
    ok = Pipeline("q", params={"region": "eu"})
    ok.task(load)
    ok.task(extract)
    assert ok.graph().order == ("extract", "load")


def test_duplicate_task_names_are_refused_at_decoration() -> None:
    """Registering two tasks with one name raises DuplicateTaskError naming it."""
    pipe = Pipeline("p")

    @pipe.task
    def extract() -> None: ...

    with pytest.raises(DuplicateTaskError, match="'extract'") as err:
        pipe.task(name="extract")(lambda: None)
    assert err.value.task == "extract"


def test_cycle_closed_at_decoration_is_reported_immediately() -> None:
    """A task that closes a cycle with tasks already declared fails when decorated."""
    pipe = Pipeline("p")

    @pipe.task
    def a(b: int) -> int:  # forward reference: fine until b exists
        return b

    with pytest.raises(CycleError) as err:

        @pipe.task
        def b(a: int) -> int:
            return a

    assert set(err.value.cycle) == {"a", "b"}


def test_decorator_returns_the_function_and_records_metadata() -> None:
    """@pipe.task returns the function itself, directly callable, with its Task attached."""
    pipe = Pipeline("p")

    def transform(extract: list[int]) -> int:
        return sum(extract)

    assert pipe.task(retries=2, timeout=3)(transform) is transform
    assert transform([1, 2]) == 3
    t = transform.__pipewarden_task__  # type: ignore[attr-defined]
    assert (t.name, t.retry.retries, t.timeout) == ("transform", 2, 3.0)


def test_dependencies_from_parameters_and_depends_on() -> None:
    """Parameter names that are tasks and explicit depends_on both become edges; run parameters do not."""
    pipe = Pipeline("p")

    @pipe.task
    def extract(path: str, logical_date: object) -> int:
        return 1

    @pipe.task
    def audit() -> None: ...

    @pipe.task(depends_on=[audit])
    def load(extract: int, run_id: str) -> None: ...

    assert pipe.graph().deps["load"] == ("extract", "audit")
    assert pipe.graph().deps["extract"] == ()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"retries": -1}, "retries must be an int >= 0"),
        ({"retry_delay": "soon"}, "retry_delay"),
        ({"retry_jitter": 2}, "retry_jitter"),
        ({"retry_on": "IOError"}, "retry_on"),
        ({"timeout": 0}, "timeout"),
        ({"checks": ["not a check"]}, "not callable"),
    ],
)
def test_bad_decorator_arguments_fail_at_decoration(kwargs: dict[str, object], match: str) -> None:
    """Wrong decorator arguments raise DecorationError naming the argument."""
    pipe = Pipeline("p")
    with pytest.raises(DecorationError, match=match):
        pipe.task(**kwargs)(lambda: None)  # type: ignore[arg-type]


def test_variadic_parameters_are_refused() -> None:
    """*args cannot be wired by name, and **kwargs collects nothing without depends_on: both are refused."""
    pipe = Pipeline("p")
    with pytest.raises(DecorationError, match=r"\*\*kwargs receives the outputs of the tasks in depends_on"):

        @pipe.task
        def f(**kwargs: object) -> None: ...

    with pytest.raises(DecorationError, match=r"\*args parameters are not supported"):

        @pipe.task
        def g(*args: object) -> None: ...


def test_task_named_like_a_run_parameter_is_refused() -> None:
    """A task called 'path' would shadow the run parameter, so it is refused."""
    pipe = Pipeline("p")
    with pytest.raises(DecorationError, match="run parameter"):
        pipe.task(name="path")(lambda: None)


def _fn(name: str, params: tuple[str, ...]) -> Any:
    ns: dict[str, Any] = {}
    exec(f"def {name}({', '.join(params)}): return None", ns)
    return ns[name]


@pytest.mark.parametrize(
    "tasks, cycle",
    [
        ([("a", ("a",), ())], ["a", "a"]),
        ([("a", ("b",), ()), ("b", ("a",), ())], ["a", "b", "a"]),
        ([("a", ("c",), ()), ("b", ("a",), ()), ("c", ("b",), ())], ["a", "c", "b", "a"]),
        ([("x", (), ()), ("a", ("x",), ("c",)), ("b", ("a",), ()), ("c", ("b",), ())], ["a", "c", "b", "a"]),
        ([("a", (), ()), ("b", ("a",), ()), ("c", ("b", "d"), ()), ("d", ("c",), ())], ["c", "d", "c"]),
    ],
)
def test_the_task_closing_a_cycle_is_refused_with_the_cycle(
    tasks: list[tuple[str, tuple[str, ...], tuple[str, ...]]], cycle: list[str]
) -> None:
    """The last task, closing a cycle (by parameter or depends_on), raises CycleError with the path; others register."""
    pipe = Pipeline("p")
    *fine, (name, params, deps) = tasks
    for n, p, d in fine:
        pipe.task(depends_on=list(d))(_fn(n, p))
    with pytest.raises(CycleError) as err:
        pipe.task(depends_on=list(deps))(_fn(name, params))
    assert err.value.cycle == cycle
    assert name not in pipe.tasks and f"task {name!r} closes a cycle" in str(err.value)


def test_many_tasks_in_any_declaration_order_build_the_same_graph() -> None:
    """A 500-task chain declared forwards or backwards (forward references) gives the same order."""

    def build(names: list[str]) -> tuple[str, ...]:
        pipe = Pipeline("chain")
        for n in names:
            i = int(n[1:])
            pipe.task(_fn(n, (f"t{i - 1}",) if i else ()))
        return pipe.graph().order

    names = [f"t{i}" for i in range(500)]
    assert build(names) == build(names[::-1]) == tuple(names)
