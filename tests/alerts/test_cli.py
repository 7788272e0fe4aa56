"""pipewarden alerts list | ack | test: what they print and their exit codes (0 ok, 1 a receiver failed, 2 usage)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from alert_support import T0
from click.testing import CliRunner, Result
from servers import RecordingReceiver

from agent.cli import cli
from agent.records import AlertEvent, AlertState
from agent.store import SQLiteRunStore

REPO = Path(__file__).resolve().parents[2]
FP = "3f2a9c1b7d4e6a80"


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A state directory whose store holds one firing and one resolved alert."""
    home = tmp_path / "home"
    with SQLiteRunStore(home / "pipewarden.db") as store:
        labels = {"alertname": "PipelineRunFailed", "severity": "warning", "pipeline": "orders"}
        store.save_alert(
            AlertEvent(
                FP,
                "PipelineRunFailed",
                AlertState.FIRING,
                "warning",
                labels,
                {"summary": "Pipeline orders failed"},
                value=1.0,
                active_at=T0,
                fired_at=T0,
                run_id="r1",
                updated_at=T0,
            )
        )
        store.save_alert(
            AlertEvent(
                "99990000aaaa0000",
                "PipelineStale",
                AlertState.RESOLVED,
                "warning",
                {**labels, "alertname": "PipelineStale"},
                fired_at=T0 - 100,
                resolved_at=T0 - 50,
                updated_at=T0 - 50,
            )
        )
    return home


def test_list_shows_what_fires_with_its_summary(home: Path) -> None:
    """The table has the id, alert, state, pipeline, when it fired and the summary; resolved ones only with --all."""
    res = run("alerts", "list", "--home", str(home))
    assert res.exit_code == 0
    header, row, summary = res.stdout.splitlines()
    assert header.split()[:3] == ["ID", "ALERT", "STATE"]
    assert row.split() == [FP, "PipelineRunFailed", "firing", "warning", "orders", "2023-11-14", "22:13:20", "-"]
    assert summary.strip() == "Pipeline orders failed"
    everything = run("alerts", "list", "--all", "--json", "--home", str(home))
    assert [(a["fingerprint"], a["state"]) for a in json.loads(everything.stdout)] == [
        (FP, "firing"),
        ("99990000aaaa0000", "resolved"),
    ]


def test_list_with_nothing_firing_says_so(tmp_path: Path) -> None:
    """An empty store: a message on stderr, exit 0."""
    res = run("alerts", "list", "--home", str(tmp_path))
    assert (res.exit_code, res.stdout, res.stderr.strip()) == (0, "", "no alerts pending or firing")


def test_ack_by_prefix_records_the_person(home: Path) -> None:
    """ack with the first characters of the id acknowledges it as --by; a second ack reports the first."""
    res = run("alerts", "ack", FP[:6], "--by", "ann", "--home", str(home))
    assert res.exit_code == 0
    assert res.stdout.strip() == f"acknowledged {FP} (PipelineRunFailed pipeline=orders) as ann"
    with SQLiteRunStore(home / "pipewarden.db") as store:
        stored = store.get_alert(FP)
        assert stored is not None and stored.acknowledged_by == "ann"
        assert [e.name for e in store.alert_history(kind="ack")] == ["ann"]
    again = run("alerts", "ack", FP, "--by", "bob", "--home", str(home))
    assert again.exit_code == 0 and "already acknowledged by ann" in again.stdout


@pytest.mark.parametrize(
    ("alert_id", "message"),
    [
        ("0123456789abcdef", "there is no alert '0123456789abcdef'"),
        ("9999", "is resolved, not firing"),
        ("ab", "too short"),
    ],
)
def test_ack_of_what_cannot_be_acknowledged_exits_2_with_one_line(home: Path, alert_id: str, message: str) -> None:
    """Unknown, resolved or too-short ids: exit 2 and one clear line on stderr."""
    res = run("alerts", "ack", alert_id, "--by", "ann", "--home", str(home))
    assert res.exit_code == 2
    [line] = res.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line


def write_config(tmp_path: Path, receivers: list[dict[str, object]]) -> Path:
    path = tmp_path / "pipewarden.yml"
    path.write_text(json.dumps({"pipelines": [], "alerts": {"receivers": receivers}}))
    return path


def test_test_sends_through_every_receiver_and_fails_if_one_did(
    recording_receiver: RecordingReceiver, closed_port: int, tmp_path: Path
) -> None:
    """One line per receiver with its answer; a receiver that is down makes the exit code 1."""
    config = write_config(
        tmp_path,
        [
            {"name": "up", "kind": "webhook", "url": recording_receiver.url()},
            {"name": "down", "kind": "webhook", "url": f"http://127.0.0.1:{closed_port}/", "retries": 0},
        ],
    )
    res = run("alerts", "test", "--config", str(config))
    assert res.exit_code == 1
    up, down = res.stdout.splitlines()
    assert up == "ok   up (webhook): 200 OK"
    assert down.startswith("FAIL down (webhook): ConnectionRefusedError")
    assert recording_receiver.received()[0].json()["alerts"][0]["labels"]["alertname"] == "PipewardenTest"


def test_test_exits_0_when_every_receiver_answered(recording_receiver: RecordingReceiver, tmp_path: Path) -> None:
    """All receivers reachable: exit 0."""
    config = write_config(tmp_path, [{"name": "up", "kind": "slack", "url": recording_receiver.url()}])
    assert run("alerts", "test", "--config", str(config)).exit_code == 0


def test_a_bad_or_missing_config_exits_2_naming_the_file_and_key(tmp_path: Path) -> None:
    """A wrong key path or a missing file: exit 2 with the file and what is wrong."""
    bad = write_config(tmp_path, [{"name": "x", "kind": "pager"}])
    res = run("alerts", "test", "--config", str(bad))
    assert res.exit_code == 2
    assert res.stderr.startswith(f"error: {bad}:1: alerts.receivers[0]: Input tag 'pager'")
    missing = run("alerts", "test", "--config", str(tmp_path / "nope.yml"))
    assert missing.exit_code == 2 and f"{tmp_path / 'nope.yml'}: cannot read" in missing.stderr


def test_the_alerts_commands_run_as_a_program(home: Path) -> None:
    """`python -m agent alerts list` from the checkout lists the firing alert."""
    res = subprocess.run(
        [sys.executable, "-m", "agent", "alerts", "list", "--home", str(home)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert FP in res.stdout
