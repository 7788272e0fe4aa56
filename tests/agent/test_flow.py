"""Branching and trigger rules: which tasks run, which end skipped, and how joins decide."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from agent.errors import BranchError, ConfigError, DecorationError
from agent.flow import TRIGGER_RULES, branch_choice, verdict
from agent.pipeline import Pipeline
from agent.records import RunStatus
from agent.runner import resume, run
from checks import not_null

S, F, K, U, C, X = (
    RunStatus.SUCCESS,
    RunStatus.FAILED,
    RunStatus.SKIPPED,
    RunStatus.UPSTREAM_FAILED,
    RunStatus.CACHED,
    RunStatus.CANCELLED,
)


@pytest.mark.parametrize(
    ("rule", "upstream", "expected"),
    [
        ("all_success", {"a": S, "b": C}, "run"),
        ("all_success", {"a": S, "b": None}, None),
        ("all_success", {"a": F, "b": None}, U),
        ("all_success", {"a": K, "b": S}, K),
        ("none_failed", {"a": K, "b": S}, "run"),
        ("none_failed", {"a": K, "b": K}, "run"),
        ("none_failed", {"a": F, "b": None}, U),
        ("none_failed", {"a": U, "b": S}, U),
        ("any_success", {"a": F, "b": S}, "run"),
        ("any_success", {"a": F, "b": None}, None),
        ("any_success", {"a": F, "b": K}, U),
        ("any_success", {"a": K, "b": K}, K),
        ("all_done", {"a": F, "b": K}, "run"),
        ("all_done", {"a": F, "b": None}, None),
        ("all_done", {"a": X, "b": S}, X),
    ],
)
def test_verdict_of_each_rule(rule: str, upstream: dict[str, Any], expected: Any) -> None:
    """Each trigger rule runs, waits or ends the task as its table says."""
    v = verdict(rule, upstream, {})
    if expected is None:
        assert v is None
    elif expected == "run":
        assert v is not None and v.run
    else:
        assert v is not None and not v.run and v.state is expected


def test_a_blocked_upstream_is_never_merely_skipped() -> None:
    """A task a blocking check stopped counts as stopped for none_failed (skipped, blocked), not as a branch skip."""
    v = verdict("none_failed", {"a": K, "b": S}, {"a": "check: unique failed"})
    assert v is not None and v.state is K and v.blocked and v.reason == "check: unique failed"
    assert verdict("all_done", {"a": K, "b": S}, {"a": "check: unique failed"}) == verdict("all_done", {"a": S}, {})


@pytest.mark.parametrize(
    ("value", "chosen"),
    [("left", {"left"}), (["left", "right"], {"left", "right"}), (None, set()), ([], set())],
)
def test_branch_choice_accepts_names_lists_and_none(value: Any, chosen: set[str]) -> None:
    """A branch returns a name, a list of names, or None for none."""
    assert branch_choice("pick", value, {"left", "right"}) == chosen


@pytest.mark.parametrize("value", ["nope", ["left", 3], 1.5, {"left": True}])
def test_branch_choice_refuses_what_is_not_a_child(value: Any) -> None:
    """Anything but names of direct children is a BranchError naming what is allowed."""
    with pytest.raises(BranchError) as info:
        branch_choice("pick", value, {"left", "right"})
    assert info.value.allowed == ["left", "right"] and "'left', 'right'" in str(info.value)


def _branching(decide: str | None, counts: Counter[str], *, join_rule: str = "none_failed") -> Pipeline:
    pipe = Pipeline("branching")

    @pipe.task
    def extract() -> int:
        counts["extract"] += 1
        return 5

    @pipe.task(branch=True)
    def pick(extract: int) -> str | None:
        counts["pick"] += 1
        return decide

    @pipe.task(depends_on=[pick])
    def small(extract: int) -> str:
        counts["small"] += 1
        return "small"

    @pipe.task(depends_on=[pick])
    def large(extract: int) -> str:
        counts["large"] += 1
        return "large"

    @pipe.task
    def after_large(large: str) -> str:
        counts["after_large"] += 1
        return large

    @pipe.task(trigger_rule=join_rule)
    def join(small: str | None, after_large: str | None) -> str:
        counts["join"] += 1
        return small or after_large or "none"

    return pipe


def test_branch_skips_the_other_way_and_the_join_runs(run_opts: dict[str, Any]) -> None:
    """The branch not taken ends skipped (with its subtree), the none_failed join runs, and the run succeeds."""
    counts: Counter[str] = Counter()
    rec = run(_branching("small", counts), **run_opts)
    assert rec.status is RunStatus.SUCCESS
    states = rec.task_states
    assert states["small"] is S and states["large"] is K and states["after_large"] is K and states["join"] is S
    assert rec.latest()["large"].reason == "branch pick chose small"
    assert rec.latest()["after_large"].reason == "upstream task large was skipped"
    assert rec.outputs["join"] == "small"
    assert counts == Counter(extract=1, pick=1, small=1, join=1)


def test_a_branch_returning_none_short_circuits_everything_below(run_opts: dict[str, Any]) -> None:
    """Returning None skips every task below the branch; with all_success the join is skipped too."""
    counts: Counter[str] = Counter()
    rec = run(_branching(None, counts, join_rule="all_success"), **run_opts)
    assert rec.status is RunStatus.SUCCESS
    assert {t: str(s) for t, s in rec.task_states.items()} == {
        "extract": "success",
        "pick": "success",
        "small": "skipped",
        "large": "skipped",
        "after_large": "skipped",
        "join": "skipped",
    }
    assert rec.latest()["small"].reason == "branch pick chose none of the tasks below it"


def test_a_branch_returning_a_stranger_fails_and_skips_nothing(run_opts: dict[str, Any]) -> None:
    """A branch that names a task not directly below it fails with BranchError; the tasks below upstream-fail."""
    counts: Counter[str] = Counter()
    rec = run(_branching("after_large", counts), **run_opts)
    assert rec.status is RunStatus.FAILED
    assert rec.task_state("pick") is F
    error = rec.latest()["pick"].error or ""
    assert "BranchError" in error and "'large', 'small'" in error
    assert rec.task_state("small") is U and rec.task_state("join") is U
    assert counts["small"] == counts["large"] == 0


def test_a_branch_without_tasks_below_is_refused_when_the_graph_is_built() -> None:
    """A branch task nothing depends on is a ConfigError that says how to declare the choices."""
    pipe = Pipeline("lonely")
    pipe.task(branch=True)(lambda: "x")
    with pytest.raises(ConfigError, match=r"has no task directly downstream.*depends_on=\['<lambda>'\]"):
        pipe.graph()


def test_a_join_with_all_success_after_a_failure_is_upstream_failed_but_all_done_runs(run_opts: dict[str, Any]) -> None:
    """all_done runs a cleanup task after a failure (it receives None for the failed input); the run still fails."""
    pipe = Pipeline("cleanup")
    seen: dict[str, Any] = {}

    @pipe.task
    def extract() -> int:
        raise RuntimeError("source down")

    @pipe.task
    def load(extract: int) -> int:
        return extract

    @pipe.task(trigger_rule="all_done")
    def cleanup(extract: int | None, load: int | None) -> str:
        seen["inputs"] = (extract, load)
        return "cleaned"

    rec = run(pipe, **run_opts)
    assert rec.status is RunStatus.FAILED
    assert rec.task_state("load") is U and rec.task_state("cleanup") is S
    assert seen["inputs"] == (None, None)
    assert rec.error and rec.error.startswith("extract failed")


def test_any_success_runs_when_one_source_answers(run_opts: dict[str, Any]) -> None:
    """any_success runs a task when at least one of its upstream tasks succeeded."""
    pipe = Pipeline("mirrors")

    @pipe.task
    def primary() -> str:
        raise ConnectionError("primary down")

    @pipe.task
    def mirror() -> str:
        return "rows from the mirror"

    @pipe.task(trigger_rule="any_success")
    def load(primary: str | None, mirror: str | None) -> str:
        return primary or mirror or ""

    rec = run(pipe, **run_opts)
    assert rec.task_state("load") is S and rec.outputs["load"] == "rows from the mirror"
    assert rec.status is RunStatus.FAILED  # primary failed: the run says so


def test_a_blocking_check_stops_a_none_failed_join(run_opts: dict[str, Any]) -> None:
    """Fail closed: below a check that blocked, a none_failed join does not run; it is skipped with the reason."""
    import pandas as pd

    pipe = Pipeline("gated")

    @pipe.task(checks=[not_null("amount")])
    def clean() -> pd.DataFrame:
        return pd.DataFrame({"amount": [1.0, None]})

    @pipe.task
    def other() -> int:
        return 1

    @pipe.task(trigger_rule="none_failed")
    def join(clean: Any, other: int) -> int:
        return other

    rec = run(pipe, **run_opts)
    assert rec.task_state("join") is K
    assert (rec.latest()["join"].reason or "").startswith("clean: ")
    assert rec.status is RunStatus.FAILED


def test_resume_keeps_the_branch_choice(run_opts: dict[str, Any]) -> None:
    """A resume after a failure below the branch runs the failed task again, never the way not taken."""
    counts: Counter[str] = Counter()
    state = {"broken": True}
    pipe = Pipeline("branch_resume")

    @pipe.task(branch=True)
    def pick() -> str:
        counts["pick"] += 1
        return "fast"

    @pipe.task(depends_on=[pick])
    def fast() -> str:
        counts["fast"] += 1
        if state["broken"]:
            raise RuntimeError("bug")
        return "fast"

    @pipe.task(depends_on=[pick])
    def slow() -> str:
        counts["slow"] += 1
        return "slow"

    @pipe.task(trigger_rule="none_failed")
    def join(fast: str | None, slow: str | None) -> str:
        return fast or slow or ""

    first = run(pipe, **run_opts)
    assert first.status is RunStatus.FAILED and first.task_state("slow") is K
    state["broken"] = False
    again = resume(pipe, first.run_id, **run_opts)
    assert again.ok and again.outputs["join"] == "fast"
    assert counts == Counter(pick=1, fast=2)
    assert again.task_state("slow") is K


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"trigger_rule": "one_success"}, "must be one of all_success, none_failed, any_success, all_done"),
        ({"branch": True, "map": "x"}, "either a branch or mapped"),
        ({"branch": "yes"}, "branch must be True or False"),
        ({"max_parallel": 2}, "add map="),
        ({"map": "x", "max_parallel": 0}, "max_parallel must be an int >= 1"),
        ({"map": "nothing"}, "map='nothing' names no parameter"),
        ({"branch": True, "cache": "1d"}, "a branch task cannot be cached"),
    ],
)
def test_flow_options_are_checked_when_the_task_is_declared(options: dict[str, Any], message: str) -> None:
    """Wrong mapping, branching or trigger-rule options raise DecorationError at decoration, naming the fix."""
    pipe = Pipeline("bad")
    with pytest.raises(DecorationError, match=message.replace("(", r"\(").replace("[", r"\[")):

        @pipe.task(**options)
        def t(x: list[int]) -> None: ...


def test_trigger_rules_are_documented_in_one_place() -> None:
    """The rule names the decorator accepts are the keys of agent.flow.TRIGGER_RULES, each with its meaning."""
    assert list(TRIGGER_RULES) == ["all_success", "none_failed", "any_success", "all_done"]
    assert all(TRIGGER_RULES.values())


def test_doctests_run() -> None:
    """The examples in the docstrings of the flow, mapping, cache and sensor modules hold."""
    import doctest

    import agent.cache
    import agent.flow
    import agent.mapping
    import agent.sensors

    for module in (agent.flow, agent.mapping, agent.cache, agent.sensors):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
