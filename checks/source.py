"""Tables too large for one DataFrame: read as a sequence of pandas batches.

A :class:`TableSource` knows a table's columns and dtypes before reading it
(:meth:`~TableSource.prototype`, a frame of zero rows) and yields it as
pandas DataFrames of bounded size, reading only the columns asked for. The
table a source stands for is ``pd.concat(batches, ignore_index=True)``: rows
are numbered from 0 across the batches, and that number is what a streamed
check reports where a whole-frame check reports an index label.

>>> import pandas as pd
>>> src = as_source([pd.DataFrame({"a": [1, 2]}), pd.DataFrame({"a": [3]})])
>>> [len(b) for b in src.batches(["a"])], list(src.prototype().columns)
([2, 1], ['a'])

What :func:`as_source` reads, and how:

* an iterable of DataFrames: a list or tuple can be read again; an iterator
  or generator is read once;
* a ``pyarrow.Table`` (by record batches of at most ``batch_rows``), a
  ``pyarrow.RecordBatch``, a ``pyarrow.RecordBatchReader`` (read once);
* a parquet file or directory (``str`` or ``os.PathLike``) or a
  ``pyarrow.dataset.Dataset``: by record batches of at most ``batch_rows``
  rows, only the columns the checks need;
* a Dask DataFrame (:class:`DaskSource`): the checks' partial states are
  computed per partition on the workers and merged on the client.

Nothing here imports dask or ``pyarrow.dataset`` until such an input arrives.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pandas as pd

from checks.errors import CheckInputError

__all__ = [
    "ArrowSource",
    "DEFAULT_BATCH_ROWS",
    "DaskSource",
    "DatasetSource",
    "FramesSource",
    "TableSource",
    "as_source",
    "is_table_source",
]

#: Rows per batch read from Arrow tables and parquet datasets: a batch of ten columns is then
#: about 40 MB, and the per-batch overhead of the checks small (half this size is 15% slower).
DEFAULT_BATCH_ROWS = 1 << 19
#: Batches pyarrow decodes ahead of the one being checked, in its own threads.
READAHEAD = 2


class TableSource:
    """A table read as pandas batches; subclasses implement :meth:`prototype` and :meth:`batches`.

    >>> import pyarrow as pa
    >>> src = as_source(pa.table({"id": [1, 2, 3], "x": [0.5, None, 1.5]}), batch_rows=2)
    >>> [b["id"].tolist() for b in src.batches(["id"])], src.reiterable
    ([[1, 2], [3]], True)
    """

    #: False when the table can be read only once (an iterator, a RecordBatchReader).
    reiterable: bool = True

    def prototype(self) -> pd.DataFrame:
        """A frame of zero rows with the table's columns and dtypes."""
        raise NotImplementedError

    def batches(self, columns: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
        """The table's rows, in order, as DataFrames of ``columns`` (None: every column).

        ``columns=[]`` yields frames of no columns whose length is the batch's row count.
        """
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__


def _project(df: pd.DataFrame, columns: Sequence[str] | None) -> pd.DataFrame:
    if columns is None:
        return df
    return df[list(columns)]


class FramesSource(TableSource):
    """An iterable of DataFrames; an iterator is read once, a list or tuple again and again."""

    def __init__(self, frames: Iterable[Any]) -> None:
        self._frames = frames
        self.reiterable = iter(frames) is not frames
        self._head: pd.DataFrame | None = None
        self._rest: Iterator[Any] | None = None
        self._used = False

    def _check(self, df: Any, i: int) -> pd.DataFrame:
        if not isinstance(df, pd.DataFrame):
            raise CheckInputError(f"item {i} of the iterable of frames is a {type(df).__name__}, not a DataFrame")
        return df

    def prototype(self) -> pd.DataFrame:
        if self.reiterable:
            # the dtypes pd.concat gives the frames (an int column with a float one is float, ...)
            empties = [self._check(df, i).iloc[:0] for i, df in enumerate(self._frames)]
            if not empties:
                return pd.DataFrame()
            if all(e.dtypes.equals(empties[0].dtypes) for e in empties[1:]):
                return empties[0]
            return pd.concat(empties, ignore_index=True)
        if self._head is None and self._rest is None:
            self._rest = iter(self._frames)
            first = next(self._rest, None)
            self._head = pd.DataFrame() if first is None else self._check(first, 0)
        assert self._head is not None
        return self._head.iloc[:0]

    def batches(self, columns: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
        if self.reiterable:
            for i, df in enumerate(self._frames):
                yield _project(self._check(df, i), columns)
            return
        if self._used:
            raise CheckInputError(
                "this iterator of frames was read already; pass a list of frames, a parquet path, a "
                "pyarrow Table or dataset to read a table more than once, or run the checks in one pass "
                "with checks.run_checks([...], frames)"
            )
        self._used = True
        self.prototype()
        assert self._head is not None and self._rest is not None
        if len(self._head.columns) or len(self._head):
            yield _project(self._head, columns)
        for i, df in enumerate(self._rest, start=1):
            yield _project(self._check(df, i), columns)

    def describe(self) -> str:
        return "frames" if self.reiterable else "an iterator of frames"


def _to_pandas(batch: Any) -> pd.DataFrame:
    df = batch.to_pandas()
    if not isinstance(df.index, pd.RangeIndex):  # an index stored in the file: a stream numbers rows itself
        df = df.reset_index(drop=True)
    return df


class ArrowSource(TableSource):
    """A ``pyarrow.Table`` or ``RecordBatch`` (read again and again) or a ``RecordBatchReader`` (read once)."""

    def __init__(self, data: Any, batch_rows: int = DEFAULT_BATCH_ROWS) -> None:
        self._data = data
        self.batch_rows = int(batch_rows)
        self.reiterable = type(data).__name__ != "RecordBatchReader"
        self._used = False

    def prototype(self) -> pd.DataFrame:
        return self._data.schema.empty_table().to_pandas()

    def batches(self, columns: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
        data = self._data
        if not self.reiterable:
            if self._used:
                raise CheckInputError("this RecordBatchReader was read already; pass a pyarrow Table to read it again")
            self._used = True
            for batch in data:
                yield _to_pandas(batch if columns is None else batch.select(list(columns)))
            return
        data = [data] if type(data).__name__ == "RecordBatch" else data.to_batches(max_chunksize=self.batch_rows)
        for batch in data:
            yield _to_pandas(batch if columns is None else batch.select(list(columns)))


class DatasetSource(TableSource):
    """A parquet file or directory, or any ``pyarrow.dataset.Dataset``: record batches of bounded size.

    Only the requested columns are read; pyarrow reads ahead a few batches in
    its own threads while the checks work on the current one.
    """

    def __init__(self, data: Any, batch_rows: int = DEFAULT_BATCH_ROWS) -> None:
        self._data = data
        self.batch_rows = int(batch_rows)
        self._dataset: Any = None

    @property
    def dataset(self) -> Any:
        if self._dataset is None:
            import pyarrow.dataset as ds

            data = self._data
            if isinstance(data, str | os.PathLike):
                if not os.path.exists(data):
                    raise CheckInputError(f"no parquet file or directory at {os.fspath(data)!r}")
                data = ds.dataset(os.fspath(data), format="parquet")
            self._dataset = data
        return self._dataset

    def prototype(self) -> pd.DataFrame:
        return self.dataset.schema.empty_table().to_pandas()

    def batches(self, columns: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
        cols = list(self.dataset.schema.names) if columns is None else list(columns)
        files = self._parquet_files(cols)
        if files is None:
            # a small read-ahead: pyarrow's default (16 batches of each of 4 files) would hold gigabytes
            scan = self.dataset.to_batches(
                columns=cols, batch_size=self.batch_rows, batch_readahead=READAHEAD, fragment_readahead=1
            )
            for batch in scan:
                yield _to_pandas(batch)
            return
        # file by file, row group by row group: less memory and less time than the dataset scanner
        import pyarrow.parquet as pq

        target = pa_schema(self.dataset.schema, cols)
        for path in files:
            # one file open at a time: a reader keeps what it read until it is released
            with self.dataset.filesystem.open_input_file(path) as handle:
                reader = pq.ParquetFile(handle)
                for batch in reader.iter_batches(batch_size=self.batch_rows, columns=cols):
                    yield _to_pandas(batch if batch.schema.equals(target) else _cast(batch, target))
                del reader

    def _parquet_files(self, columns: list[str]) -> list[str] | None:
        """The dataset's parquet files when each holds every column asked for; else None."""
        import pyarrow.dataset as ds
        import pyarrow.parquet as pq

        data = self.dataset
        if not isinstance(data, ds.FileSystemDataset) or not isinstance(data.format, ds.ParquetFileFormat):
            return None
        for path in data.files:
            names = pq.read_schema(path, filesystem=data.filesystem).names
            if not set(columns) <= set(names):  # partition columns, or a column added later
                return None
        return list(data.files)

    def describe(self) -> str:
        data = self._data
        return f"parquet at {os.fspath(data)!r}" if isinstance(data, str | os.PathLike) else "a pyarrow dataset"


class DaskSource(TableSource):
    """A Dask DataFrame: checks compute partial states per partition on the workers (see ``checks.stream``).

    :meth:`batches` computes one partition at a time in this process; the
    stream runner uses it only to fetch a few rows again (examples).
    """

    def __init__(self, frame: Any) -> None:
        self.frame = frame

    def prototype(self) -> pd.DataFrame:
        meta = self.frame._meta
        return meta.iloc[:0].reset_index(drop=True)

    def batches(self, columns: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
        frame = self.frame if columns is None else self.frame[list(columns)]
        for i in range(frame.npartitions):
            yield frame.get_partition(i).compute().reset_index(drop=True)

    def describe(self) -> str:
        return f"a Dask DataFrame of {self.frame.npartitions} partitions"


def pa_schema(schema: Any, columns: list[str]) -> Any:
    """``schema`` reduced to ``columns``, in their order."""
    import pyarrow as pa

    return pa.schema([schema.field(c) for c in columns], metadata=schema.metadata)


def _cast(batch: Any, schema: Any) -> Any:
    import pyarrow as pa

    return pa.Table.from_batches([batch]).cast(schema).combine_chunks().to_batches()[0]


def _kind(x: Any) -> str:
    t = type(x)
    module, name = t.__module__ or "", t.__name__
    if module.startswith("dask") and name == "DataFrame":
        return "dask"
    if module.startswith("pyarrow"):
        if name in ("Table", "RecordBatch", "RecordBatchReader"):
            return "arrow"
        if "Dataset" in name:
            return "dataset"
    return ""


def is_table_source(x: Any) -> bool:
    """True for the inputs :func:`as_source` reads as a stream (not for a pandas DataFrame)."""
    if isinstance(x, pd.DataFrame | str | bytes):
        return False
    if isinstance(x, TableSource | os.PathLike) or _kind(x):
        return True
    return isinstance(x, list | tuple) and bool(x) and all(isinstance(f, pd.DataFrame) for f in x)


def as_source(data: Any, *, batch_rows: int | None = None) -> TableSource:
    """``data`` as a :class:`TableSource`; a CheckInputError names what was found and what is read.

    ``batch_rows`` bounds the batches read from Arrow tables and parquet
    datasets (default :data:`DEFAULT_BATCH_ROWS`).
    """
    rows = DEFAULT_BATCH_ROWS if batch_rows is None else int(batch_rows)
    if isinstance(data, TableSource):
        return data
    if isinstance(data, pd.DataFrame):
        return FramesSource([data])
    kind = _kind(data)
    if kind == "dask":
        return DaskSource(data)
    if kind == "arrow":
        return ArrowSource(data, rows)
    if kind == "dataset" or isinstance(data, str | os.PathLike):
        return DatasetSource(data, rows)
    if isinstance(data, Iterable) and not isinstance(data, bytes | dict | pd.Series):
        return FramesSource(data)
    raise CheckInputError(
        f"expected a pandas DataFrame or a table read in batches (an iterable of DataFrames, a pyarrow "
        f"Table or RecordBatchReader, a parquet path or pyarrow dataset, a Dask DataFrame), got {type(data).__name__}"
    )
