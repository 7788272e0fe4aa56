"""A long-running file trigger forgets the files that were processed and then moved away."""

from __future__ import annotations

import time
from pathlib import Path

from agent.triggers import FileTrigger


def poll_until(trig: FileTrigger, done: bool, now: float) -> list[str]:
    """Poll (watchdog reports asynchronously) until a file is offered, or until ``done()`` holds; 10 s at most."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        offered = trig.poll(now=now)
        if offered:
            for f in offered:
                trig.mark_done(f)
            return [Path(f.path).name for f in offered]
        if done and not trig._done:
            return []
        time.sleep(0.02)
    return []


def test_files_moved_away_after_their_run_are_forgotten(tmp_path: Path) -> None:
    """With the watcher on, 20 files offered, marked done and then deleted leave nothing remembered."""
    trig = FileTrigger(tmp_path, "*.csv", stable_seconds=0)
    trig.start()
    try:
        assert trig.poll(now=0.0) == []
        for i in range(20):
            path = tmp_path / f"batch-{i}.csv"
            path.write_text("id\n1\n")
            assert poll_until(trig, False, float(i + 1)) == [path.name]
            path.unlink()
            assert poll_until(trig, True, float(i + 1)) == []
            assert trig._done == {}  # the memory of offered files holds only files that still exist
    finally:
        trig.stop()
