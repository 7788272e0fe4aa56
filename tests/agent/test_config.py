"""pipewarden.yml: validated whole, every problem with its file, line and key path; overrides applied."""

from __future__ import annotations

import doctest
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

import agent.config
from agent.cli import cli
from agent.config import load_config, load_pipelines_from
from agent.errors import ConfigError
from agent.schedules import Cron, FileArrival, Interval

PIPES = textwrap.dedent("""
    from agent import Pipeline

    orders = Pipeline("orders", params={"limit": 10})

    @orders.task
    def extract(limit: int) -> list[int]:
        return list(range(limit))

    @orders.task
    def transform(extract: list[int]) -> list[int]:
        return extract

    billing = Pipeline("billing", schedule="0 6 * * *")

    @billing.task
    def bill() -> None:
        return None
""")


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "pipes.py").write_text(PIPES)
    path = tmp_path / "pipewarden.yml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_pipelines_from(path, env=env or {})
    return info.value.problems


def test_doctests_run() -> None:
    """The examples in the module's docstrings run as written."""
    result = doctest.testmod(agent.config)
    assert result.attempted > 0 and result.failed == 0


def test_pipelines_load_with_their_overrides(tmp_path: Path) -> None:
    """Targets are imported relative to the file; schedule, files, params, limits and checks are applied."""
    path = write(
        tmp_path,
        """
        agent: {listen: "127.0.0.1:0", grace_period: 2m}
        pipelines:
          - target: pipes.py:orders
            schedule: "*/15 * * * *"
            timezone: Europe/Paris
            params: {limit: 3}
            max_active_runs: 2
            catchup: all
            checks:
              transform:
                - row_count: {min: 1}
          - target: pipes.py:billing
            name: invoices
            files: {directory: inbox, pattern: "*.csv", stable_seconds: 2}
    """,
    )
    loaded = load_pipelines_from(path, env={})
    assert loaded.agent.grace_period == 120.0
    orders = loaded.pipelines["orders"].pipeline
    assert orders.schedule == Cron("*/15 * * * *", timezone="Europe/Paris")
    assert (orders.params, orders.max_active_runs, orders.catchup) == ({"limit": 3}, 2, None)
    assert [c.name for c in orders.tasks["transform"].checks] == ["row_count"]
    invoices = loaded.pipelines["invoices"].pipeline
    assert invoices.schedule == FileArrival(str(tmp_path / "inbox"), "*.csv", 2.0, False)
    assert load_config(path, env={}).pipelines[0].schedule == "*/15 * * * *"


def test_every_problem_is_reported_at_once_with_line_and_path(tmp_path: Path) -> None:
    """Unknown keys (with a suggestion), bad values, a missing file and an unknown task: one error, each located."""
    path = write(
        tmp_path,
        """
        agent:
          listen: 127.0.0.1:99999
          grace_perod: 5s
        pipelines:
          - target: pipes.py:orders
            schedul: every 5m
        alerts:
          rules:
            - name: Stale
              condition: {kind: stale, max_ag: 1h}
    """,
    )
    found = problems(path)
    f = str(path)
    assert (
        f"{f}:3: agent.listen: listen is host:port, such as 127.0.0.1:9464 (port 0: any free port) — got "
        "'127.0.0.1:99999'" in found
    )
    assert f"{f}:4: agent.grace_perod: unknown key; did you mean 'grace_period'?" in found
    assert f"{f}:7: pipelines[0].schedul: unknown key; did you mean 'schedule'?" in found
    assert f"{f}:11: alerts.rules[0].condition.max_ag: unknown key; did you mean 'max_age'?" in found
    assert f"{f}:11: alerts.rules[0].condition.max_age: required" in found
    assert len(found) == 5, found


def test_pipeline_problems_name_their_entry(tmp_path: Path) -> None:
    """A missing file, an unknown task in checks, an undeclared parameter and a bad schedule are each located."""
    path = write(
        tmp_path,
        """
        pipelines:
          - target: missing.py
          - target: pipes.py:orders
            schedule: "every -5m"
            params: {limt: 3}
            checks:
              transfrom:
                - row_count: {min: 1}
              extract:
                - uniq: {key: id}
    """,
    )
    found = "\n".join(problems(path))
    assert f"{path}:3: pipelines[0].target: pipeline file" in found and "missing.py does not exist" in found
    assert f"{path}:5: pipelines[1].schedule: schedule 'every -5m' is not a valid cron expression" in found
    assert f"{path}:6: pipelines[1].params.limt: 'orders' declares no parameter 'limt'; did you mean 'limit'?" in found
    assert (
        f"{path}:8: pipelines[1].checks.transfrom: 'orders' has no task 'transfrom'; did you mean 'transform'?" in found
    )
    assert f"{path}:10: checks[0] unknown check 'uniq'; did you mean 'unique'?" in found


def test_environment_variables_are_substituted(tmp_path: Path) -> None:
    """${VAR} reads the environment, ${VAR:-x} has a default, $$ is a dollar; an unset variable is located."""
    path = write(
        tmp_path,
        """
        agent:
          listen: "${LISTEN}"
          home: "${HOME_DIR:-/tmp/pw}-$$x"
          env: {OTEL_SERVICE_NAME: "${NAME}"}
    """,
    )
    config = load_config(path, env={"LISTEN": "127.0.0.1:9999", "NAME": "etl"})
    assert (config.agent.listen, config.agent.home, config.agent.env) == (
        "127.0.0.1:9999",
        "/tmp/pw-$x",
        {"OTEL_SERVICE_NAME": "etl"},
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, env={"LISTEN": "127.0.0.1:9999"})
    assert info.value.problems == [
        f"{path}:5: agent.env.OTEL_SERVICE_NAME: environment variable NAME is not set "
        "(write ${NAME:-default} for a default)"
    ]


def test_an_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    """A 1 KB document of nested aliases is refused with a clear error instead of expanding to billions."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path = tmp_path / "pipewarden.yml"
    path.write_text("\n".join(lines) + "\nagent: {}\n")
    assert path.stat().st_size < 1024
    with pytest.raises(ConfigError, match=r"pipewarden.yml:\d+: the document expands to more than 100,000 values"):
        load_config(path, env={})


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("agent: [unclosed\n", ":2: not valid YAML: while parsing a flow sequence expected ',' or ']'"),
        ("- just\n- a list\n", ":1: the configuration is a mapping"),
        ("agent:\n  max_runs: many\n", ":2: agent.max_runs: Input should be a valid integer"),
    ],
)
def test_malformed_files_get_one_located_line(tmp_path: Path, text: str, needle: str) -> None:
    """YAML syntax errors, a non-mapping document and wrong types each name the file and the line."""
    path = tmp_path / "pipewarden.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(path) + needle in str(info.value)


def test_validate_exits_0_or_2(tmp_path: Path) -> None:
    """`pipewarden validate` says the file is valid (exit 0) or prints every problem (exit 2)."""
    good = write(tmp_path, "pipelines:\n  - target: pipes.py:orders\n")
    result = CliRunner().invoke(cli, ["validate", str(good)])
    assert result.exit_code == 0 and "valid; 1 pipeline(s): orders" in result.output
    good.write_text("pipelines:\n  - targt: pipes.py\n  - target: pipes.py:nope\n")
    result = CliRunner().invoke(cli, ["validate", str(good)])
    assert result.exit_code == 2
    assert "pipelines[0].targt: unknown key; did you mean 'target'?" in result.output
    assert "pipelines[0].target: required" in result.output


def test_intervals_and_manual_schedules(tmp_path: Path) -> None:
    """`every 10m` and `manual` are schedules too."""
    path = write(
        tmp_path,
        "pipelines:\n  - {target: 'pipes.py:orders', schedule: every 10m}\n"
        "  - {target: 'pipes.py:billing', schedule: manual}\n",
    )
    loaded = load_pipelines_from(path, env={})
    assert isinstance(loaded.pipelines["orders"].pipeline.schedule, Interval)
    assert loaded.pipelines["billing"].pipeline.schedule.kind == "manual"


@pytest.mark.parametrize("writable", ["pipewarden.yml", "pipes.py", "."])
def test_a_file_others_can_write_is_refused(tmp_path: Path, writable: str) -> None:
    """The configuration, a pipeline file it imports, or their directory writable by every user: refused,
    naming the file and the chmod that fixes it, before anything is imported."""
    home = tmp_path / "conf"
    home.mkdir(mode=0o755)
    (home / "pipes.py").write_text(
        "import pathlib\npathlib.Path(__file__).with_name('imported').touch()\n"
        "from agent import Pipeline\np = Pipeline('p')\n@p.task\ndef t() -> int:\n"
        "    return 1\n"
    )
    (home / "pipewarden.yml").write_text("pipelines:\n  - target: pipes.py:p\n")
    (home / writable).chmod(0o777 if writable == "." else 0o666)
    with pytest.raises(ConfigError) as info:
        load_pipelines_from(home / "pipewarden.yml", env={})
    message = str(info.value)
    assert "is writable by every user" in message
    fix = f"chmod 700 {home}" if writable == "." else f"chmod 600 {home / writable}"
    assert message.endswith(fix), message
    assert not (home / "imported").exists()
