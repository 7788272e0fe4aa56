"""Typed run parameters: -p, the daemon's API and pipewarden.yml convert by annotation, or refuse in one line."""

from __future__ import annotations

import dataclasses
import datetime as dt
import doctest
import enum
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Literal

import pydantic
import pytest

import agent.params
from agent.config import load_pipelines_from
from agent.errors import ConfigError, ParamError
from agent.params import describe, param_types, resolve_params
from agent.pipeline import Pipeline
from agent.runner import run
from agent.store import SQLiteRunStore

REPO = Path(__file__).resolve().parents[2]


class Region(enum.Enum):
    EU = "eu"
    US = "us"


@dataclasses.dataclass
class Window:
    start: dt.date
    days: int = 1


class Source(pydantic.BaseModel):
    url: str
    retries: int = 3


def typed_pipeline() -> Pipeline:
    pipe = Pipeline(
        "typed",
        params={
            "repos": ["acme/api"],
            "day": dt.date(2025, 1, 1),
            "region": Region.EU,
            "mode": "fast",
            "window": None,
            "source": None,
            "limit": 10,
            "since": None,
            "ratios": (),
        },
    )

    @pipe.task
    def fetch(
        repos: list[str],
        day: dt.date,
        region: Region,
        mode: Literal["fast", "slow"],
        window: Window | None,
        source: Source | None,
        since: dt.datetime | None,
        ratios: tuple[float, ...],
        limit,  # no annotation: the default's type (int)
    ) -> None:
        return None

    return pipe


@pytest.mark.parametrize(
    "name, given, typed, stored",
    [
        ("repos", "acme/api, acme/web", ["acme/api", "acme/web"], ["acme/api", "acme/web"]),
        ("repos", '["a,b", "c"]', ["a,b", "c"], ["a,b", "c"]),
        ("repos", "", [], []),
        ("repos", ["x", "y"], ["x", "y"], ["x", "y"]),
        ("day", "2025-01-31", dt.date(2025, 1, 31), "2025-01-31"),
        ("region", "us", Region.US, "us"),
        ("mode", "slow", "slow", "slow"),
        (
            "window",
            '{"start": "2025-02-01", "days": 7}',
            Window(dt.date(2025, 2, 1), 7),
            {"start": "2025-02-01", "days": 7},
        ),
        ("window", {"start": "2025-02-01"}, Window(dt.date(2025, 2, 1), 1), {"start": "2025-02-01", "days": 1}),
        ("window", "null", None, None),
        ("source", '{"url": "https://x"}', Source(url="https://x"), {"url": "https://x", "retries": 3}),
        ("since", "2025-01-31T06:00:00", dt.datetime(2025, 1, 31, 6, tzinfo=dt.UTC), "2025-01-31T06:00:00Z"),
        ("ratios", "0.5,1", (0.5, 1.0), [0.5, 1.0]),
        ("limit", "42", 42, 42),
    ],
)
def test_values_convert_to_the_annotated_type(name: str, given: Any, typed: Any, stored: Any) -> None:
    """Text and JSON values become the annotated type; the stored form is that value as JSON."""
    values, saved = resolve_params(typed_pipeline(), {name: given})
    assert values[name] == typed and type(values[name]) is type(typed)
    assert saved[name] == stored
    json.dumps(saved)  # what the store keeps is plain JSON


@pytest.mark.parametrize(
    "name, given, allowed",
    [
        ("repos", "[1, ", "a list, comma-separated (a,b) or JSON ([...]), of any text"),
        ("day", "tomorrow", "an ISO date such as 2025-01-31"),
        ("region", "mars", "one of 'eu', 'us'"),
        ("mode", "medium", "one of 'fast', 'slow'"),
        ("window", '{"days": 2}', "a JSON object with fields start, days or null"),
        ("limit", "4.5", "a whole number such as 42"),
        ("ratios", "0.5,x", "a list, comma-separated (a,b) or JSON ([...]), of number such as 0.5"),
    ],
)
def test_a_value_that_does_not_convert_is_one_line_naming_it(name: str, given: str, allowed: str) -> None:
    """A bad value raises ParamError: one line with the parameter, the value given and what is allowed."""
    with pytest.raises(ParamError) as err:
        resolve_params(typed_pipeline(), {name: given})
    message = str(err.value)
    assert "\n" not in message
    assert f"run parameter {name!r}" in message and repr(given) in message and f"allowed: {allowed}" in message
    assert (err.value.param, err.value.value, err.value.allowed) == (name, given, allowed)


def test_tasks_that_annotate_one_parameter_differently_are_refused() -> None:
    """Two tasks typing the same run parameter differently is a ConfigError naming both."""
    pipe = Pipeline("p", params={"n": 1})
    pipe.task(name="a")(_fn("n: int"))
    pipe.task(name="b")(_fn("n: float"))
    with pytest.raises(ConfigError, match=r"annotated int in task 'a' and float in task 'b'"):
        param_types(pipe)


def test_string_annotations_resolve_from_the_module_and_closures() -> None:
    """`from __future__ import annotations` strings resolve, names of an enclosing function the task uses included."""

    class Local(enum.Enum):
        A = "a"

    pipe = Pipeline("p", params={"kind": None, "day": None})

    @pipe.task
    def t(kind: Local, day: dt.date) -> None:  # this module has `from __future__ import annotations`
        assert isinstance(kind, Local)  # a name the task uses is in its closure

    assert param_types(pipe)["kind"] is Local and param_types(pipe)["day"] is dt.date
    assert resolve_params(pipe, {"kind": "a"})[0]["kind"] is Local.A


def test_an_unresolvable_annotation_is_a_config_error() -> None:
    """An annotation naming something the module does not have stops the run with the name in the message."""
    pipe = Pipeline("p", params={"day": None})
    ns: dict[str, Any] = {}
    exec("def t(day: 'Nowhere') -> None: ...", ns)
    pipe.task(name="t")(ns["t"])
    with pytest.raises(
        ConfigError, match=r"annotation .*Nowhere.* of run parameter 'day' cannot be resolved \(NameError"
    ):
        resolve_params(pipe, {"day": "2025-01-01"})


def test_unannotated_parameters_follow_the_default_and_values_of_the_type_pass_as_they_are() -> None:
    """Without annotations the default's type converts; a value already of its type is kept without pydantic work."""
    pipe = Pipeline("p", params={"when": dt.datetime(2025, 1, 1, tzinfo=dt.UTC), "tags": ["a"], "free": None})
    pipe.task(name="t")(_fn("when, tags, free"))
    day = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
    values, stored = resolve_params(pipe, {"when": day, "tags": "x,y", "free": {"any": 1}})
    assert values["when"] is day and stored["when"] == "2025-03-01T00:00:00+00:00"
    assert values["tags"] == ["x", "y"] and values["free"] == {"any": 1}


def test_describe_reads_like_a_sentence() -> None:
    """describe() says what values of a type look like."""
    assert describe(dt.date) == "an ISO date such as 2025-01-31"
    assert describe(list[Region]) == "a list, comma-separated (a,b) or JSON ([...]), of one of 'eu', 'us'"
    assert describe(int | None) == "a whole number such as 42 or null"


def test_doctests_run() -> None:
    """The examples in agent.params run as written."""
    assert doctest.testmod(agent.params).failed == 0


def test_runs_get_typed_values_and_keep_their_json_for_resume(run_opts: dict[str, Any]) -> None:
    """A run's tasks receive typed values, the store keeps them as JSON, and a queued run converts them again."""
    pipe = typed_pipeline()
    got: dict[str, Any] = {}
    pipe.tasks["fetch"] = dataclasses.replace(pipe.tasks["fetch"], fn=lambda **kw: got.update(kw))
    pipe._graph = None
    rec = run(pipe, {"repos": "a/b,c/d", "day": "2025-01-31", "region": "us"}, **run_opts)
    assert rec.ok
    assert got["repos"] == ["a/b", "c/d"] and got["day"] == dt.date(2025, 1, 31) and got["region"] is Region.US
    stored = run_opts["store"].get_run(rec.run_id).params
    assert stored["day"] == "2025-01-31" and stored["region"] == "us" and stored["repos"] == ["a/b", "c/d"]
    run_opts["store"].create_run(run_id="queued-1", pipeline="typed", trigger="manual", params=stored, now=0.0)
    got.clear()
    assert run(pipe, run_id="queued-1", **run_opts).ok
    assert got["day"] == dt.date(2025, 1, 31) and got["region"] is Region.US


def test_pipewarden_yml_params_convert_or_name_their_line(tmp_path: Path) -> None:
    """params: in pipewarden.yml convert to the parameter's type; a bad one is reported with file and line."""
    (tmp_path / "pipes.py").write_text(PIPE_FILE)
    config = tmp_path / "pipewarden.yml"
    config.write_text(
        "pipelines:\n  - target: pipes.py:typed\n    params:\n      repos: a/b,c/d\n      day: 2025-01-31\n"
    )
    pipe = load_pipelines_from(config).pipelines["typed"].pipeline
    assert pipe.params["repos"] == ["a/b", "c/d"] and pipe.params["day"] == dt.date(2025, 1, 31)
    config.write_text("pipelines:\n  - target: pipes.py:typed\n    params:\n      repos: [a]\n      day: someday\n")
    with pytest.raises(ConfigError) as err:
        load_pipelines_from(config)
    assert err.value.problems == [
        f"{config}:5: pipelines[0].params.day: run parameter 'day' of pipeline 'typed' got 'someday', which is not "
        "a date (Input should be a valid date or datetime, input is too short); allowed: an ISO date such as 2025-01-31"
    ]


PIPE_FILE = textwrap.dedent("""
    import datetime as dt
    from agent import Pipeline

    pipe = Pipeline("typed", params={"repos": ["acme/api"], "day": dt.date(2025, 1, 1)})

    @pipe.task
    def fetch(repos: list[str], day: dt.date) -> str:
        if not isinstance(repos, list) or not all(isinstance(r, str) for r in repos):
            raise TypeError(f"repos arrived as {repos!r}")
        if type(day) is not dt.date:
            raise TypeError(f"day arrived as {day!r}")
        print(f"{len(repos)} repos on {day:%A}")
        return day.isoformat()
""")


def _cli(home: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PIPEWARDEN_"))}
    env.update(PYTHONPATH=str(REPO), OTEL_TRACES_EXPORTER="none")
    return subprocess.run(
        [sys.executable, "-m", "agent", *args, "--home", str(home)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_pipewarden_run_converts_list_and_date_parameters(tmp_path: Path) -> None:
    """`pipewarden run -p repos=a/b,c/d -p day=2025-01-31`: the task gets a list of str and a date."""
    (tmp_path / "pipes.py").write_text(PIPE_FILE)
    home = tmp_path / "home"
    done = _cli(home, "run", "pipes.py", "-p", "repos=a/b,c/d", "-p", "day=2025-01-31", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    printed, _, report = done.stdout.partition("\n")
    assert printed == "2 repos on Friday"  # what the task printed still reaches the terminal
    record = json.loads(report)
    assert record["status"] == "success"
    assert record["params"] == {"repos": ["a/b", "c/d"], "day": "2025-01-31"}
    shown = _cli(home, "runs", "show", record["run_id"], "--task", "fetch", "--logs", cwd=tmp_path)
    assert "2 repos on Friday" in shown.stdout


@pytest.mark.parametrize(
    "param, allowed",
    [
        ("day=31/01/2025", "allowed: an ISO date such as 2025-01-31"),
        ("repos=[1,", "allowed: a list, comma-separated (a,b) or JSON ([...]), of any text"),
    ],
)
def test_pipewarden_run_refuses_a_bad_value_before_anything_runs(tmp_path: Path, param: str, allowed: str) -> None:
    """A value that does not convert: exit 2, one line naming parameter, value and what is allowed; no run kept."""
    (tmp_path / "pipes.py").write_text(PIPE_FILE)
    home = tmp_path / "home"
    done = _cli(home, "run", "pipes.py", "-p", param, cwd=tmp_path)
    assert done.returncode == 2
    name, _, value = param.partition("=")
    [line] = done.stderr.splitlines()
    assert line.startswith(f"error: run parameter {name!r} of pipeline 'typed' got {value!r}") and allowed in line
    assert done.stdout == ""
    if (home / "pipewarden.db").exists():
        with SQLiteRunStore(home / "pipewarden.db") as store:
            assert store.list_runs() == []


def _fn(params: str) -> Any:
    ns: dict[str, Any] = {}
    exec(f"def f({params}): return None", ns)
    return ns["f"]


@pytest.mark.usefixtures("restore_logging")
def test_the_daemon_converts_triggered_values_and_refuses_bad_ones(tmp_path: Path) -> None:
    """Daemon.trigger (the API, `pipewarden trigger`) converts like -p; a bad value is a ParamError, nothing queued."""
    import threading

    from agent.daemon import Daemon

    (tmp_path / "pipes.py").write_text(PIPE_FILE)
    (tmp_path / "pipewarden.yml").write_text("pipelines:\n  - target: pipes.py:typed\n")
    d = Daemon(tmp_path / "pipewarden.yml", env={}, home=tmp_path / "home", serve=False, watch_config=False)
    d.start()
    try:
        with pytest.raises(ParamError, match=r"run parameter 'day' of pipeline 'typed' got 'someday'"):
            d.trigger("typed", {"day": "someday"})
        assert d.store.list_runs() == []
        done: list[str] = []
        caller = threading.Thread(
            target=lambda: done.append(d.trigger("typed", {"repos": "a/b,c/d", "day": "2025-01-31"}))
        )
        caller.start()
        while not d._triggers:
            caller.join(0.01)
        d.tick(d.clock())
        caller.join(10)
        for active in d._running():
            active.thread.join(20)
        [record] = d.store.list_runs()
        assert record.run_id == done[0] and record.status.value == "success"
        assert record.params["repos"] == ["a/b", "c/d"] and record.params["day"] == "2025-01-31"
    finally:
        d.stop(grace=5)
