"""Table sources: what each input yields, which columns it reads, and what it says when it cannot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from checks.errors import CheckInputError
from checks.source import ArrowSource, DatasetSource, FramesSource, as_source, is_table_source

FRAME = pd.DataFrame({"a": np.arange(10), "b": np.linspace(0, 1, 10), "c": list("xyzxyzxyzx")})


def _rows(source: object, columns: list[str] | None) -> pd.DataFrame:
    assert hasattr(source, "batches")
    return pd.concat(list(source.batches(columns)), ignore_index=True)


@pytest.mark.parametrize(
    "make",
    [
        lambda tmp: [FRAME.iloc[:4], FRAME.iloc[4:]],
        lambda tmp: pa.Table.from_pandas(FRAME, preserve_index=False),
        lambda tmp: pa.RecordBatchReader.from_batches(
            pa.Schema.from_pandas(FRAME, preserve_index=False),
            pa.Table.from_pandas(FRAME, preserve_index=False).to_batches(max_chunksize=3),
        ),
        lambda tmp: (FRAME.to_parquet(tmp / "f.parquet", index=False), tmp / "f.parquet")[1],
        lambda tmp: (FRAME.to_parquet(tmp / "f.parquet", index=False), ds.dataset(tmp / "f.parquet"))[1],
    ],
    ids=["list", "arrow table", "arrow reader", "parquet path", "pyarrow dataset"],
)
def test_every_source_yields_the_table_and_only_the_columns_asked(make, tmp_path: Path) -> None:
    """Each source yields the table's rows in order, and only the columns asked for."""
    source = as_source(make(tmp_path), batch_rows=3)
    assert list(source.prototype().columns) == ["a", "b", "c"] and len(source.prototype()) == 0
    got = _rows(source, ["c", "a"])
    pd.testing.assert_frame_equal(got, FRAME[["c", "a"]], check_dtype=False)


def test_row_counts_only_need_no_column(tmp_path: Path) -> None:
    """columns=[] yields frames of no columns whose lengths are the batches' rows."""
    pq.write_table(pa.Table.from_pandas(FRAME, preserve_index=False), tmp_path / "f.parquet", row_group_size=4)
    assert [len(b) for b in DatasetSource(tmp_path / "f.parquet", batch_rows=3).batches([])] == [3, 1, 3, 1, 2]
    assert sum(len(b) for b in ArrowSource(pa.Table.from_pandas(FRAME), batch_rows=4).batches([])) == 10


def test_an_iterator_is_read_once_and_says_so() -> None:
    """An iterator of frames is read once; reading it again is an error naming what can be read again."""
    source = FramesSource(iter([FRAME, FRAME]))
    assert source.prototype().columns.tolist() == ["a", "b", "c"]
    assert len(_rows(source, None)) == 20
    with pytest.raises(CheckInputError, match="read already"):
        _rows(source, None)


def test_a_list_of_frames_has_the_dtypes_concat_gives_it() -> None:
    """Frames whose dtypes differ have the prototype pd.concat gives them (int and float make float)."""
    frames = [pd.DataFrame({"a": [1, 2]}), pd.DataFrame({"a": [1.5]})]
    assert str(FramesSource(frames).prototype()["a"].dtype) == "float64"


def test_a_partitioned_dataset_keeps_its_partition_columns(tmp_path: Path) -> None:
    """A hive-partitioned directory is read with its partition column, which no file holds."""
    table = pa.Table.from_pandas(FRAME, preserve_index=False)
    pq.write_to_dataset(table, tmp_path, partition_cols=["c"])
    data = ds.dataset(tmp_path, partitioning="hive")
    got = _rows(DatasetSource(data), ["a", "c"]).sort_values("a", ignore_index=True)
    assert got["a"].tolist() == list(range(10)) and got["c"].astype(str).tolist() == FRAME["c"].tolist()


@pytest.mark.parametrize("value", [42, {"a": 1}, pd.Series([1, 2])])
def test_what_is_not_a_table_is_an_error_naming_it(value: object) -> None:
    """A value that is no table is refused with a message naming its type and what is read."""
    with pytest.raises(CheckInputError, match=type(value).__name__):
        as_source(value)


def test_tables_are_told_from_other_values_without_reading_them(tmp_path: Path) -> None:
    """is_table_source is true for streams and paths, false for a DataFrame, text and plain lists."""
    assert is_table_source([FRAME]) and is_table_source(tmp_path) and is_table_source(pa.table({"a": [1]}))
    assert not is_table_source(FRAME) and not is_table_source("text") and not is_table_source([1, 2])
