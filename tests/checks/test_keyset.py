"""Key codes and their partitions: exact codes where the value fits, summaries that add up."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from checks.keyset import (
    PREFIXES,
    KeyCoder,
    KeySpill,
    dup_summary,
    missing_summary,
    partition,
    positions,
    records,
    row_hash,
    sides,
)


@pytest.mark.parametrize(
    ("values", "mode"),
    [
        (pd.Series([3, -1, 3], dtype="int64"), "int"),
        (pd.Series([1.5, -0.0, 0.0, np.nan, float("nan")]), "float"),
        (pd.Series(pd.to_datetime(["2024-01-01", None, "2024-01-01"])), "int"),
        (pd.Series([1, None, 1], dtype="Int64"), "nullable-int"),
        (pd.Series(["a", None, "a"], dtype=object), "hash"),
    ],
)
def test_equal_values_get_equal_codes_and_others_not(values: pd.Series, mode: str) -> None:
    """Codes are equal exactly when pandas holds the values equal (NaN equals NaN, -0.0 equals 0.0)."""
    coder = KeyCoder.for_tables(["k"], values.to_frame("k"))
    assert coder.mode == mode
    a, b = coder.codes(values.to_frame("k"))
    pairs = list(zip(a.tolist(), (b if b is not None else np.zeros(len(a), dtype=np.uint64)).tolist(), strict=True))
    groups = pd.Series(values).duplicated(keep=False).tolist()
    assert [pairs.count(p) > 1 for p in pairs] == groups


def test_integers_meet_floats_as_floats() -> None:
    """Comparing an integer key with a float key codes both as floats, so 1 matches 1.0."""
    coder = KeyCoder.for_tables(["k"], pd.DataFrame({"k": [1]}), pd.DataFrame({"k": [1.0]}))
    assert coder.mode == "float"
    assert coder.codes(pd.DataFrame({"k": [1]}))[0][0] == coder.codes(pd.DataFrame({"k": [1.0]}))[0][0]


def test_exact_codes_decode_to_the_values() -> None:
    """An exact code decodes to the key value, as examples show it."""
    frame = pd.DataFrame({"k": pd.to_datetime(["2024-05-01 10:00"])})
    coder = KeyCoder.for_tables(["k"], frame)
    a, _ = coder.codes(frame)
    assert coder.decode(int(a[0]), 0, frame["k"].dtype) == "2024-05-01 10:00:00"


def test_partitions_keep_equal_keys_together_and_lose_nothing() -> None:
    """Every record lands in exactly one prefix partition, and a key always in the same one."""
    rng = np.random.default_rng(1)
    a = rng.integers(0, 1000, 20_000).astype(np.uint64)
    parts = partition(records(a, None, 0))
    assert len(parts) == PREFIXES and sum(len(p) for p in parts) == len(a)
    homes = [set(p["a"].tolist()) for p in parts]
    assert sum(len(h) for h in homes) == len(np.unique(a))


def test_summaries_of_partitions_add_up_to_the_whole() -> None:
    """Duplicate and missing-key summaries over partitions equal those over all records."""
    rng = np.random.default_rng(2)
    out = records(rng.integers(0, 5000, 8000).astype(np.uint64), None, 0)
    src = records(rng.integers(0, 6000, 9000).astype(np.uint64), None, 0, side=1)
    both = np.concatenate([out, src])
    whole_dup, whole_missing = dup_summary(out), missing_summary(both)
    dup = missing = None
    for p_out, p_both in zip(partition(out), partition(both), strict=True):
        d, m = dup_summary(p_out), missing_summary(p_both)
        dup = d if dup is None else dup.combine(d)
        missing = m if missing is None else missing.combine(m)
    assert dup == whole_dup and missing == whole_missing
    assert (sides(src) == 1).all() and positions(src).tolist() == list(range(9000))
    frame = pd.Series(out["a"])
    assert whole_dup.extra == frame.duplicated().sum() and whole_dup.involved == frame.duplicated(keep=False).sum()


def test_a_spill_gives_back_what_it_was_given(tmp_path) -> None:
    """Records spilled to files come back per partition, in the order added, and the files go on close."""
    spill = KeySpill(spill_bytes=10_000, directory=str(tmp_path))
    recs = records(np.arange(5000, dtype=np.uint64), None, 0)
    for i in range(0, 5000, 700):
        spill.add(recs[i : i + 700])
    back = np.concatenate([spill.part(p) for p in range(PREFIXES)])
    assert sorted(back["pos"].tolist()) == list(range(5000))
    assert any(tmp_path.iterdir())
    spill.close()
    assert not any(tmp_path.iterdir())


def test_row_hashes_are_equal_for_equal_rows_only() -> None:
    """Rows equal in every column hash equal; a difference in any one column changes the hash."""
    frame = pd.DataFrame(
        {"i": [1, 1, 1], "f": [0.0, -0.0, 0.5], "c": pd.Categorical(["a", "a", "a"]), "s": ["x", "x", "x"]}
    )
    h = row_hash(frame, list(frame.columns))
    assert h[0] == h[1] != h[2]
