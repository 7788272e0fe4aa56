"""Task outputs kept for resume: safe formats by type, pickles only by opt-in, nothing untrusted loaded."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from agent.artifacts import NONE_REF, load_output, output_problem, save_output
from agent.errors import UntrustedPathError


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir(mode=0o700)
    return h


FRAME = pd.DataFrame(
    {
        "id": [1, 2, 3],
        "amount": [1.5, None, 3.0],
        "at": pd.date_range("2025-01-01", periods=3, tz="Europe/Paris"),
        "country": pd.Categorical(["FR", "DE", "FR"]),
    },
    index=pd.Index([10, 20, 30], name="row"),
)

SAME: list[tuple[str, Any]] = [
    ("dataframe", FRAME),
    ("series", pd.Series([1.0, 2.0], name="amount")),
    ("unnamed-series", pd.Series([1, 2])),
    ("arrow-table", pa.table({"id": [1, 2], "name": ["a", "b"]})),
    ("arrow-batch", pa.record_batch({"id": [1, 2]})),
    ("int", 42),
    ("nested-json", {"rows": [1, 2.5, None, True, "x"], "ok": {"a": []}}),
    ("large-json", list(range(20_000))),
]


@pytest.mark.parametrize(("kind", "value"), SAME, ids=[k for k, _ in SAME])
def test_outputs_come_back_the_same_without_pickle(home: Path, kind: str, value: Any) -> None:
    """Frames (Arrow IPC) and JSON values (inline or a file) load back equal, with no pickle written."""
    ref, why = save_output(home, "r1", "t", value)
    assert ref is not None and why is None
    assert not list(home.rglob("*.pkl"))
    back = load_output(home, ref)
    if isinstance(value, pd.DataFrame):
        pd.testing.assert_frame_equal(back, value)
    elif isinstance(value, pd.Series):
        pd.testing.assert_series_equal(back, value)
    elif isinstance(value, pa.Table | pa.RecordBatch):
        assert type(back) is type(value) and back.equals(value)
    else:
        assert back == value and type(back) is type(value)
    assert ref.startswith("json:") == (kind in ("int", "nested-json"))


NOT_KEPT: list[tuple[str, Any, str]] = [
    ("set", {1, 2}, "neither a frame nor plain JSON"),
    ("tuple", (1, 2), "neither a frame nor plain JSON"),
    ("numpy-scalar", np.int64(3), "neither a frame nor plain JSON"),
    ("int-keys", {1: "a"}, "neither a frame nor plain JSON"),
    ("int-column-names", pd.DataFrame({0: [1]}), "column names are not all strings"),
    ("mixed-object-column", pd.DataFrame({"m": [1, "a"]}), "pyarrow cannot store it"),
]


@pytest.mark.parametrize(("kind", "value", "why"), NOT_KEPT, ids=[k for k, _, _ in NOT_KEPT])
def test_values_without_a_safe_format_are_not_kept_and_say_why(home: Path, kind: str, value: Any, why: str) -> None:
    """A value that would not come back the same is not kept (no pickle) unless persist='pickle'."""
    ref, reason = save_output(home, "r1", "t", value)
    assert ref is None and why in (reason or "") and "persist='pickle'" in (reason or "")
    ref, reason = save_output(home, "r1", "t", value, allow_pickle=True)
    assert ref is not None and ref.endswith(".pkl") and reason is None
    back = load_output(home, ref, allow_pickle=True)
    assert back.equals(value) if isinstance(value, pd.DataFrame) else back == value


def test_none_needs_nothing_kept(home: Path) -> None:
    """A task that returned None has the 'none' reference and no file."""
    assert save_output(home, "r1", "t", None) == (NONE_REF, None)
    assert not (home / "artifacts").exists()


def test_a_pickle_is_loaded_only_when_the_task_opts_in(home: Path) -> None:
    """A .pkl reference of a task without persist='pickle' is reported as not loadable, never unpickled."""
    marker = home.parent / "unpickled"

    class Boom:
        def __reduce__(self) -> Any:
            return (open, (str(marker), "w"))

    folder = home / "artifacts" / "r1"
    folder.mkdir(parents=True)
    (folder / "t.pkl").write_bytes(pickle.dumps(Boom()))
    problem = output_problem(home, "artifacts/r1/t.pkl")
    assert problem is not None and "persist='pickle'" in problem
    with pytest.raises(OSError):
        load_output(home, "artifacts/r1/t.pkl")
    assert not marker.exists()


@pytest.mark.parametrize("loose", ["home", "artifacts", "file"])
def test_an_output_others_could_write_is_refused(home: Path, loose: str) -> None:
    """An output in a directory, or a file, writable by other users raises UntrustedPathError naming it."""
    ref, _ = save_output(home, "r1", "t", FRAME)
    assert ref is not None
    target = {"home": home, "artifacts": home / "artifacts", "file": home / ref}[loose]
    os.chmod(target, 0o777 if target.is_dir() else 0o666)
    with pytest.raises(UntrustedPathError) as info:
        load_output(home, ref)
    assert info.value.path == str(target) and "chmod" in str(info.value)


def test_a_reference_outside_the_state_directory_is_not_followed(home: Path, tmp_path: Path) -> None:
    """An output reference pointing outside the state directory (an edited store) is not loaded."""
    outside = tmp_path / "elsewhere.json"
    outside.write_text("[1]")
    for ref in (str(outside), "artifacts/../../elsewhere.json"):
        problem = output_problem(home, ref)
        assert problem is not None and "outside the state directory" in problem


def test_kept_files_are_private(home: Path) -> None:
    """A kept output and its directories are readable by the user only."""
    ref, _ = save_output(home, "r1", "t", FRAME)
    assert ref is not None
    assert (home / ref).stat().st_mode & 0o777 == 0o600
    assert (home / "artifacts" / "r1").stat().st_mode & 0o777 == 0o700
