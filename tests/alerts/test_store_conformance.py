"""The alert state store contract, run against every implementation: in memory, SQLite, PostgreSQL."""

from __future__ import annotations

import dataclasses
import doctest
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.records import AlertEvent, AlertState
from agent.store import SQLiteRunStore
from alerts.store import AlertHistoryEntry, AlertNotFoundError, AlertStateStore, MemoryAlertStore, find_alert

F, P, R, OFF = AlertState.FIRING, AlertState.PENDING, AlertState.RESOLVED, AlertState.INACTIVE


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AlertStateStore]:
    if request.param == "memory":
        yield MemoryAlertStore()
        return
    if request.param == "postgresql":
        from agent.pg_store import PostgresRunStore

        pg = PostgresRunStore(request.getfixturevalue("pg_url"))
        yield pg
        pg.close()
        return
    s = SQLiteRunStore(tmp_path / "pipewarden.db")
    yield s
    s.close()


def alert(fp: str, state: AlertState = F, **changes: object) -> AlertEvent:
    base = AlertEvent(
        fp,
        "PipelineRunFailed",
        state,
        "warning",
        {"alertname": "PipelineRunFailed", "pipeline": "orders"},
        {"summary": "orders failed"},
        value=2.0,
        active_at=100.0,
        fired_at=100.0,
        run_id="r1",
        updated_at=100.0,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_implements_the_protocol(store: AlertStateStore) -> None:
    """Each implementation satisfies AlertStateStore structurally."""
    assert isinstance(store, AlertStateStore)


def test_a_saved_alert_reads_back_equal(store: AlertStateStore) -> None:
    """Every field round-trips, labels and annotations included."""
    a = alert("aaaa0000aaaa0000", last_sent_at=101.0, resolved_at=None, severity="critical")
    store.save_alert(a)
    assert store.get_alert(a.fingerprint) == a
    assert store.get_alert("0" * 16) is None


def test_saving_again_replaces_the_state(store: AlertStateStore) -> None:
    """One row per fingerprint: the latest save wins."""
    store.save_alert(alert("aaaa0000aaaa0000"))
    store.save_alert(alert("aaaa0000aaaa0000", R, resolved_at=200.0, updated_at=200.0))
    [only] = store.list_alerts()
    assert (only.state, only.resolved_at) == (R, 200.0)


def test_list_filters_by_state_time_and_prefix_newest_first(store: AlertStateStore) -> None:
    """states, updated_since and prefix filter; the most recently changed comes first; limit cuts."""
    store.save_alert(alert("aaaa0000aaaa0000", F, updated_at=100.0))
    store.save_alert(alert("aaaa1111aaaa1111", P, fired_at=None, updated_at=300.0))
    store.save_alert(alert("bbbb0000bbbb0000", R, updated_at=200.0))
    assert [a.fingerprint[:8] for a in store.list_alerts()] == ["aaaa1111", "bbbb0000", "aaaa0000"]
    assert [a.fingerprint[:8] for a in store.list_alerts(states=["pending", "firing"])] == ["aaaa1111", "aaaa0000"]
    assert [a.fingerprint[:8] for a in store.list_alerts(updated_since=200.0)] == ["aaaa1111", "bbbb0000"]
    assert [a.fingerprint[:8] for a in store.list_alerts(prefix="aaaa")] == ["aaaa1111", "aaaa0000"]
    assert [a.fingerprint[:8] for a in store.list_alerts(prefix="a%")] == []
    assert len(store.list_alerts(limit=1)) == 1
    assert store.list_alerts(states=[]) == []


def test_acknowledging_a_firing_alert_records_who_when_and_history(store: AlertStateStore) -> None:
    """ack sets acknowledged_at/by and updated_at, writes an ack entry; a second ack changes nothing."""
    store.save_alert(alert("aaaa0000aaaa0000"))
    acked = store.acknowledge_alert("aaaa0000aaaa0000", by="ann", now=160.0)
    assert acked is not None
    assert (acked.acknowledged_by, acked.acknowledged_at, acked.updated_at) == ("ann", 160.0, 160.0)
    again = store.acknowledge_alert("aaaa0000aaaa0000", by="bob", now=170.0)
    assert again is not None and again.acknowledged_by == "ann"
    assert store.get_alert("aaaa0000aaaa0000") == acked
    assert [(e.kind, e.name, e.at) for e in store.alert_history(kind="ack")] == [("ack", "ann", 160.0)]


@pytest.mark.parametrize("state", [P, R, OFF])
def test_only_a_firing_alert_can_be_acknowledged(store: AlertStateStore, state: AlertState) -> None:
    """Pending, resolved and inactive alerts, and unknown ids, give None and no history."""
    store.save_alert(alert("aaaa0000aaaa0000", state))
    assert store.acknowledge_alert("aaaa0000aaaa0000", by="ann", now=1.0) is None
    assert store.acknowledge_alert("ffff0000ffff0000", by="ann", now=1.0) is None
    assert store.alert_history(kind="ack") == []


def test_a_save_without_ack_keeps_the_ack_of_the_same_incident(store: AlertStateStore) -> None:
    """An evaluator saving a copy read before the ack does not erase it; a new incident starts unacknowledged."""
    store.save_alert(alert("aaaa0000aaaa0000"))
    store.acknowledge_alert("aaaa0000aaaa0000", by="ann", now=160.0)
    store.save_alert(alert("aaaa0000aaaa0000", value=5.0, updated_at=170.0))
    kept = store.get_alert("aaaa0000aaaa0000")
    assert kept is not None and (kept.acknowledged_by, kept.value) == ("ann", 5.0)
    store.save_alert(alert("aaaa0000aaaa0000", fired_at=900.0, active_at=900.0, updated_at=900.0))
    fresh = store.get_alert("aaaa0000aaaa0000")
    assert fresh is not None and fresh.acknowledged_by is None


def test_history_filters_and_counts(store: AlertStateStore) -> None:
    """History is newest first, filtered by alert, kind and time; counts match name and outcome."""
    fp = "aaaa0000aaaa0000"
    for at, outcome in ((10.0, "started"), (20.0, "limited"), (30.0, "started")):
        store.add_alert_history(
            AlertHistoryEntry(fp, "A", "action", at, name="resume", outcome=outcome, detail="d", run_id="r1")
        )
    store.add_alert_history(AlertHistoryEntry(fp, "A", "transition", 15.0, name="firing"))
    store.add_alert_history(
        AlertHistoryEntry("bbbb0000bbbb0000", "B", "action", 40.0, name="resume", outcome="started")
    )
    assert [e.at for e in store.alert_history(fingerprint=fp)] == [30.0, 20.0, 15.0, 10.0]
    assert [e.at for e in store.alert_history(kind="action", since=20.0)] == [40.0, 30.0, 20.0]
    assert len(store.alert_history(limit=2)) == 2
    first = store.alert_history(fingerprint=fp, kind="action")[-1]
    assert (first.name, first.outcome, first.detail, first.run_id, first.id > 0) == (
        "resume",
        "started",
        "d",
        "r1",
        True,
    )
    assert store.count_alert_history(fingerprint=fp, kind="action", since=0.0, name="resume", outcome="started") == 2
    assert store.count_alert_history(fingerprint=fp, kind="action", since=25.0, outcome="started") == 1
    assert store.count_alert_history(fingerprint=fp, kind="action", since=0.0) == 3


def test_prune_drops_old_finished_alerts_and_history_only(store: AlertStateStore) -> None:
    """Resolved and inactive alerts older than the cut go, firing ones stay whatever their age."""
    store.save_alert(alert("aaaa0000aaaa0000", F, updated_at=10.0))
    store.save_alert(alert("bbbb0000bbbb0000", R, updated_at=10.0))
    store.save_alert(alert("cccc0000cccc0000", R, updated_at=500.0))
    store.add_alert_history(AlertHistoryEntry("bbbb0000bbbb0000", "A", "transition", 10.0))
    store.add_alert_history(AlertHistoryEntry("cccc0000cccc0000", "A", "transition", 500.0))
    assert store.prune_alerts(100.0) == 2
    assert sorted(a.fingerprint[:4] for a in store.list_alerts()) == ["aaaa", "cccc"]
    assert [e.at for e in store.alert_history()] == [500.0]


def test_find_alert_takes_an_id_or_an_unambiguous_prefix(store: AlertStateStore) -> None:
    """A full id or a 4+ character prefix finds one alert; ambiguous, short or unknown ids say what is wrong."""
    store.save_alert(alert("aaaa0000aaaa0000"))
    store.save_alert(alert("aaaa1111aaaa1111"))
    assert find_alert(store, "aaaa0000aaaa0000").fingerprint == "aaaa0000aaaa0000"
    assert find_alert(store, "AAAA1").fingerprint == "aaaa1111aaaa1111"
    with pytest.raises(AlertNotFoundError, match="several"):
        find_alert(store, "aaaa")
    with pytest.raises(AlertNotFoundError, match="too short"):
        find_alert(store, "aa")
    with pytest.raises(AlertNotFoundError, match="no alert"):
        find_alert(store, "cccc")


def test_a_run_store_made_before_alerts_gains_the_alert_tables_and_keeps_its_runs(tmp_path: Path) -> None:
    """Opening a version-1 file applies the alert migration only; its runs are still there."""
    import sqlite3

    from agent import store as store_module

    path = tmp_path / "pipewarden.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at REAL)")
    for stmt in store_module.statements(1, "sqlite"):
        conn.execute(stmt)
    conn.execute("INSERT INTO schema_version VALUES (1, 0)")
    conn.execute(
        "INSERT INTO runs (run_id, pipeline, status, trigger, created_at) VALUES ('r1','orders','failed','cron',1.0)"
    )
    conn.commit()
    conn.close()
    with SQLiteRunStore(path) as s:
        assert s.schema_version == len(store_module.MIGRATIONS)
        assert [(r.run_id, r.pipeline, r.status, r.trigger) for r in s.list_runs()] == [
            ("r1", "orders", "failed", "cron")
        ]
        s.save_alert(alert("aaaa0000aaaa0000"))
        assert s.get_alert("aaaa0000aaaa0000") == alert("aaaa0000aaaa0000")


def test_docstring_examples_run() -> None:
    """The module's docstring example gives the output it shows."""
    import alerts.store

    result = doctest.testmod(alerts.store)
    assert result.failed == 0 and result.attempted > 0
