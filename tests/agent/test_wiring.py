"""Wiring inputs: renamed inputs, one key of a dict output, **upstream, and the errors that name what is wrong."""

from __future__ import annotations

import doctest
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Annotated, Any

import pytest

import agent.wiring
from agent.errors import CycleError, DecorationError, UnknownDependencyError
from agent.pipeline import Pipeline
from agent.records import RunStatus
from agent.runner import Runner, run
from agent.wiring import Input

REPO = Path(__file__).resolve().parents[2]


def test_a_renamed_input_receives_the_named_tasks_output(run_opts: dict[str, Any]) -> None:
    """depends_on={"raw": "extract"} gives parameter raw the output of extract, and orders the tasks."""
    pipe = Pipeline("renamed")

    @pipe.task(depends_on={"raw": "extract"})
    def count(raw: list[int]) -> int:
        return len(raw)

    @pipe.task
    def extract() -> list[int]:
        return [1, 2, 3]

    assert pipe.graph().order == ("extract", "count")
    rec = run(pipe, **run_opts)
    assert rec.ok and rec.outputs["count"] == 3


def test_an_annotated_input_and_a_key_of_a_dict_output(run_opts: dict[str, Any]) -> None:
    """Annotated[T, Input(task, key=...)] (a string annotation here) takes one key of a dict output."""
    pipe = Pipeline("keys")

    @pipe.task
    def extract() -> dict[str, list[int]]:
        return {"orders": [5, 6], "refunds": [1]}

    @pipe.task
    def total(rows: Annotated[list[int], Input("extract", key="orders")]) -> int:
        return sum(rows)

    @pipe.task(depends_on={"back": Input("extract", key="refunds")})
    def refunds(back: list[int]) -> int:
        return len(back)

    rec = run(pipe, **run_opts)
    assert rec.ok and (rec.outputs["total"], rec.outputs["refunds"]) == (11, 1)
    stored = run_opts["store"].get_run(rec.run_id)
    assert stored.latest()["total"].rows_in is None  # a list is not a table: no rows counted


def test_upstream_collects_the_outputs_of_many_tasks(run_opts: dict[str, Any]) -> None:
    """**upstream receives {task: output} of every depends_on task no named parameter takes."""
    pipe = Pipeline("fan_in")
    for region in ("eu", "us", "ap"):
        pipe.task(name=f"extract_{region}")(lambda region=region: len(region) * 10)

    @pipe.task(depends_on=["extract_eu", "extract_us", "extract_ap"])
    def combine(extract_eu: int, **upstream: int) -> dict[str, int]:
        return {"eu": extract_eu, **upstream}

    rec = run(pipe, **run_opts)
    assert rec.ok
    assert rec.outputs["combine"] == {"eu": 20, "extract_us": 20, "extract_ap": 20}


def test_a_missing_key_fails_the_task_with_one_clear_line_and_no_retry(run_opts: dict[str, Any]) -> None:
    """A key the dict output lacks fails the task (once, not retried), names the key and the keys there are."""
    pipe = Pipeline("missing")

    @pipe.task
    def extract() -> dict[str, int]:
        return {"orders": 1, "refunds": 2}

    @pipe.task(depends_on={"rows": Input("extract", key="order")}, retries=3)
    def load(rows: int) -> int:
        return rows

    @pipe.task
    def after(load: int) -> int:
        return load

    rec = run(pipe, **run_opts)
    assert rec.status is RunStatus.FAILED
    stored = run_opts["store"].get_run(rec.run_id)
    [attempt] = [a for a in stored.attempts if a.task == "load"]
    assert attempt.status is RunStatus.FAILED
    assert attempt.error == (
        "TaskInputError: parameter 'rows' of task 'load' takes key 'order' of the output of 'extract', "
        "which has no such key (keys: 'orders', 'refunds')"
    )
    assert stored.task_state("after") is RunStatus.UPSTREAM_FAILED
    assert run_opts["sleep"].delays == []


def test_a_key_of_an_output_that_is_not_a_dict_fails_the_task(run_opts: dict[str, Any]) -> None:
    """Taking a key of a list fails the task, saying what the output is."""
    pipe = Pipeline("not_dict")
    pipe.task(name="extract")(lambda: [1, 2])
    pipe.task(name="load", depends_on={"rows": Input("extract", key="orders")})(_fn("rows"))
    rec = run(pipe, **run_opts)
    assert "which is a list, not a dict" in (run_opts["store"].get_run(rec.run_id).latest()["load"].error or "")


def test_resume_takes_the_key_from_the_kept_output(run_opts: dict[str, Any], tmp_path: Path) -> None:
    """A resumed task whose input is a key of a kept dict output gets that key without rerunning the producer."""
    pipe = Pipeline("resume_keys")
    calls: list[str] = []
    broken = tmp_path / "broken"
    broken.touch()

    @pipe.task
    def extract() -> dict[str, list[int]]:
        calls.append("extract")
        return {"orders": [1, 2, 3]}

    @pipe.task(depends_on={"rows": Input("extract", key="orders")})
    def load(rows: list[int]) -> int:
        if broken.exists():
            raise RuntimeError("warehouse down")
        return len(rows)

    first = run(pipe, **run_opts)
    assert first.status is RunStatus.FAILED
    broken.unlink()
    again = Runner(**run_opts).resume(pipe, first.run_id)
    assert again.ok and again.outputs["load"] == 3 and calls == ["extract"]


@pytest.mark.parametrize(
    "declare, error, match",
    [
        (
            lambda p: p.task(name="load", depends_on={"rows": "extrct"})(_fn("rows")),
            UnknownDependencyError,
            r"parameter 'rows' of task 'load' .* is wired to 'extrct', which is not a task .*did you mean 'extract'",
        ),
        (
            lambda p: p.task(name="load", depends_on={"rowz": "extract"})(_fn("rows")),
            DecorationError,
            r"depends_on wires 'rowz', which is not one of its parameters \(rows\)",
        ),
        (
            lambda p: p.task(name="load", depends_on={"path": "extract"})(_fn("path")),
            DecorationError,
            r"parameter 'path' is a run parameter",
        ),
        (
            lambda p: p.task(name="load")(_fn("**upstream")),
            DecorationError,
            r"\*\*upstream receives the outputs of the tasks in depends_on; name them",
        ),
        (
            lambda p: p.task(name="load")(_fn("*rows")),
            DecorationError,
            r"\*rows parameters are not supported",
        ),
        (
            lambda p: p.task(name="load", depends_on={"rows": Input("extract", key=3)})(_fn("rows")),  # type: ignore[arg-type]
            DecorationError,
            r"takes a string key",
        ),
    ],
)
def test_wiring_mistakes_are_named_errors(declare: Any, error: type[Exception], match: str) -> None:
    """Unknown tasks, unknown parameters, run parameters, **upstream without depends_on: one named error each."""
    pipe = Pipeline("p")
    pipe.task(name="extract")(lambda: {"orders": 1})
    with pytest.raises(error, match=match):
        declare(pipe)
        pipe.graph()


def test_a_cycle_through_a_renamed_input_is_refused_at_decoration() -> None:
    """A renamed input that closes a cycle raises CycleError with the path, when the task is declared."""
    pipe = Pipeline("cycle")
    pipe.task(name="a", depends_on={"x": "b"})(_fn("x"))
    with pytest.raises(CycleError) as err:
        pipe.task(name="b", depends_on={"y": "a"})(_fn("y"))
    assert err.value.cycle in (["a", "b", "a"], ["b", "a", "b"])


def test_depends_on_and_an_annotation_that_disagree_are_refused() -> None:
    """A parameter wired one way by depends_on and another by its annotation is a DecorationError."""
    pipe = Pipeline("p")
    pipe.task(name="a")(lambda: 1)
    pipe.task(name="b")(lambda: 2)

    def t(x: Annotated[int, Input("a")]) -> int:
        return x

    with pytest.raises(DecorationError, match=r"wired to b by depends_on and to a by its annotation"):
        pipe.task(depends_on={"x": "b"})(t)


def test_an_input_annotation_that_cannot_be_evaluated_is_refused() -> None:
    """A string annotation mentioning Input that cannot be evaluated is refused, not silently left unwired."""
    ns: dict[str, Any] = {}
    exec("def t(x: 'Annotated[int, Input(\"a\")]'): return x", ns)  # neither name exists in that module
    pipe = Pipeline("p")
    with pytest.raises(DecorationError, match=r"annotation .* of parameter 'x' cannot be evaluated"):
        pipe.task(name="t")(ns["t"])


def test_doctests_run() -> None:
    """The examples in agent.wiring run as written."""
    assert doctest.testmod(agent.wiring).failed == 0


WIRED = textwrap.dedent("""
    from typing import Annotated

    from agent import Pipeline
    from agent.wiring import Input

    pipe = Pipeline("wired")

    @pipe.task
    def extract() -> dict:
        return {"orders": [3, 4], "refunds": [1]}

    @pipe.task(depends_on={"raw": "extract"})
    def keys(raw: dict) -> list:
        return sorted(raw)

    @pipe.task
    def orders(rows: Annotated[list, Input(extract, key="orders")]) -> int:
        return sum(rows)

    @pipe.task(depends_on=["keys", "orders"])
    def report(**upstream) -> None:
        print(f"report {sorted(upstream.items())}")
""")


def test_pipewarden_run_wires_renamed_keyed_and_collected_inputs(tmp_path: Path) -> None:
    """Through `pipewarden run`: a renamed input, a key of a dict and **upstream all reach their tasks."""
    (tmp_path / "wired.py").write_text(WIRED)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PIPEWARDEN_"))}
    env.update(PYTHONPATH=str(REPO), OTEL_TRACES_EXPORTER="none")
    done = subprocess.run(
        [sys.executable, "-m", "agent", "run", "wired.py", "--json", "--home", str(tmp_path / "home")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    printed, _, report = done.stdout.partition("\n")
    assert printed == "report [('keys', ['orders', 'refunds']), ('orders', 7)]"
    assert {t: s for t, s in json.loads(report)["tasks"].items()} == dict.fromkeys(
        ("extract", "keys", "orders", "report"), "success"
    )


def _fn(params: str) -> Any:
    ns: dict[str, Any] = {}
    exec(f"def f({params}): return None", ns)
    return ns["f"]
