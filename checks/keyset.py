"""Key codes of a stream, partitioned by hash prefix so that no key set has to fit in memory at once.

Each row of a keyed check becomes one record ``(a, b, pos)``: ``a`` and
``b`` together identify the key, ``pos`` is the row's number in its table,
with the *side* in its top bits: the checked table (0) or a further one (an
input of a loss check, 1). Records are partitioned by the top bits of a mix of ``a``: equal
keys always land in the same partition, so each partition is finished on its
own, with memory for one partition only, and the partitions' summaries add up.

How a key is coded (:class:`KeyCoder`):

* a single integer, boolean, timestamp or duration column: ``a`` is the value
  itself, ``b`` flags a null (nullable integers). The code is the key: exact.
* a single float column: ``a`` is the value's bits, with -0.0 made 0.0 and
  every NaN one NaN (NaN equals NaN, as in pandas); exact. When the other side
  of a comparison has integers, integers are coded as floats (``1`` matches
  ``1.0``, as ``Series.isin`` has it).
* anything else (text, categories, compound keys): ``a`` and ``b`` are two
  independent 64-bit hashes of the key (pandas' fixed-key hash, with two keys).
  Two different keys share a code only if both hashes collide: about
  ``n**2 / 2**129`` for n keys, far below one in a trillion for 10**9 keys.

A :class:`KeySpill` keeps records in memory and moves them to files in a
temporary directory once they pass ``spill_bytes``; 24 bytes per row, so a
50M-row key column spills 1.2 GB to disk and needs 1/64 of that in memory
when it is finished.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from checks.errors import CheckInputError

__all__ = [
    "PREFIXES",
    "RECORD",
    "DupSummary",
    "KeyCoder",
    "KeySpill",
    "MissingSummary",
    "dup_summary",
    "missing_summary",
    "partition",
    "positions",
    "records",
    "row_hash",
    "sides",
]

RECORD = np.dtype([("a", "<u8"), ("b", "<u8"), ("pos", "<i8")])
_RAW = np.dtype("V24")  # records moved as raw bytes: numpy gathers those far faster than structured ones
SIDE_SHIFT = 62
POS_MASK = (1 << SIDE_SHIFT) - 1
PREFIX_BITS = 6
PREFIXES = 1 << PREFIX_BITS
#: Records held in memory before a spill moves them to files.
SPILL_BYTES = 32 << 20
EXAMPLES = 5
_SECOND_HASH_KEY = "pipewarden-key-2"  # 16 characters, as pandas' hash_key must be


def _mix(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """splitmix64's finaliser: a bijection of uint64 that spreads any values over all bits (in place on ``out``)."""
    z = np.array(x, dtype=np.uint64, copy=True) if out is None else out
    if out is not None and out is not x:
        np.copyto(z, x, casting="unsafe")
    t = np.empty_like(z)
    for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
        np.right_shift(z, np.uint64(shift), out=t)
        np.bitwise_xor(z, t, out=z)
        np.multiply(z, np.uint64(mult), out=z)
    np.right_shift(z, np.uint64(31), out=t)
    np.bitwise_xor(z, t, out=z)
    return z


def records(a: np.ndarray, b: np.ndarray | None, offset: int, side: int = 0) -> np.ndarray:
    """Records for consecutive rows starting at row ``offset``."""
    out = np.empty(len(a), dtype=RECORD)
    out["a"] = a
    out["b"] = 0 if b is None else b
    out["pos"] = np.arange(offset, offset + len(a), dtype=np.int64) + (side << SIDE_SHIFT)
    return out


def positions(recs: np.ndarray) -> np.ndarray:
    """Each record's row number in its table."""
    return recs["pos"] & POS_MASK


def sides(recs: np.ndarray) -> np.ndarray:
    """Each record's side: 0 for the checked table, 1 for a further one."""
    return recs["pos"] >> SIDE_SHIFT


def _take(recs: np.ndarray, index: np.ndarray) -> np.ndarray:
    return recs.view(_RAW)[index].view(RECORD)


def partition(recs: np.ndarray, parts: int = PREFIXES) -> list[np.ndarray]:
    """``recs`` split into ``parts`` (a power of two up to 256) by the top bits of their mixed ``a``."""
    bits = parts.bit_length() - 1
    prefix = (_mix(recs["a"]) >> np.uint64(64 - bits)).astype(np.uint8) if bits else np.zeros(len(recs), np.uint8)
    order = np.argsort(prefix, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(prefix, minlength=parts))])
    ordered = _take(recs, order)
    return [ordered[bounds[p] : bounds[p + 1]] for p in range(parts)]


def row_hash(batch: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """A 64-bit hash of each row over ``columns``: equal rows (NaN equal to NaN, -0.0 to 0.0) hash equal.

    Numbers and timestamps are mixed from their bits and categories from a
    hash of their labels, so only text is hashed value by value (pandas' hash,
    which hashes each distinct value once).
    """
    h = np.full(len(batch), 0x9E3779B97F4A7C15, dtype=np.uint64)
    for col in columns:
        np.bitwise_xor(h, _column_code(batch[col]), out=h)
        _mix(h, out=h)
    return h


def _column_code(s: pd.Series) -> np.ndarray:
    dtype = s.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "iubmM":
        x = s.to_numpy()
        return (x.view(np.int64) if x.dtype.itemsize == 8 else x.astype(np.int64)).view(np.uint64)
    if pd.api.types.is_float_dtype(dtype):
        v = s.to_numpy(dtype=np.float64, na_value=np.nan) + 0.0
        v[np.isnan(v)] = np.nan
        return v.view(np.uint64)
    if isinstance(dtype, pd.CategoricalDtype):
        labels = pd.util.hash_array(np.asarray(dtype.categories.astype(object)))
        codes = s.cat.codes.to_numpy()
        return np.append(labels, np.uint64(0x5851F42D4C957F2D))[codes]  # code -1 (null) picks the last
    try:
        return pd.util.hash_pandas_object(_canonical(s), index=False).to_numpy(dtype=np.uint64)
    except TypeError as exc:
        raise CheckInputError(f"column {s.name!r} ({s.dtype}) holds values that cannot be hashed: {exc}") from exc


# -- coding keys --------------------------------------------------------------------------------
def _mode(dtype: Any) -> str:
    if isinstance(dtype, np.dtype):
        if dtype.kind in "iubmM":
            return "int"
        if dtype.kind == "f":
            return "float"
    if isinstance(dtype, pd.api.extensions.ExtensionDtype) and not isinstance(dtype, pd.CategoricalDtype):
        if pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
            return "nullable-int"
        if pd.api.types.is_float_dtype(dtype):
            return "float"
    return "hash"


@dataclass(frozen=True)
class KeyCoder:
    """How the key ``columns`` are coded; ``exact`` when the code is the key itself.

    Built from the dtypes of every table whose keys are compared, so both
    sides of a loss check code ``1`` and ``1.0`` alike.

    >>> frame = pd.DataFrame({"id": [5, 6]})
    >>> coder = KeyCoder.for_tables(["id"], frame)
    >>> coder.exact, coder.decode(int(coder.codes(frame)[0][1]), 0, frame["id"].dtype)
    (True, 6)
    """

    columns: tuple[str, ...]
    mode: str  # int | nullable-int | float | hash

    @classmethod
    def for_tables(cls, columns: Sequence[str], *prototypes: pd.DataFrame) -> KeyCoder:
        cols = tuple(columns)
        if len(cols) != 1:
            return cls(cols, "hash")
        modes = {_mode(p[cols[0]].dtype) for p in prototypes}
        if len(modes) == 1:
            return cls(cols, modes.pop())
        if modes <= {"int", "nullable-int", "float"}:
            return cls(cols, "float")
        return cls(cols, "hash")

    @property
    def exact(self) -> bool:
        return self.mode != "hash"

    def codes(self, batch: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        """``(a, b)`` for every row of ``batch``."""
        if self.mode == "hash":
            return _hash_codes(batch, self.columns)
        s = batch[self.columns[0]]
        if self.mode == "int":
            x = s.to_numpy()
            x = x.view(np.int64) if x.dtype.itemsize == 8 else x.astype(np.int64)
            return x.view(np.uint64), None
        if self.mode == "nullable-int":
            nulls = s.isna().to_numpy()
            values = s.to_numpy(dtype=np.int64, na_value=0).view(np.uint64)
            return values, nulls.astype(np.uint64)
        v = s.to_numpy(dtype=np.float64, na_value=np.nan) + 0.0  # -0.0 + 0.0 is 0.0
        v[np.isnan(v)] = np.nan
        return v.view(np.uint64), None

    def decode(self, a: int, b: int, dtype: Any) -> Any:
        """The key value of an exact code, as a JSON-ready value (None for null)."""
        from checks.keys import jsonable

        if self.mode == "nullable-int" and b:
            return None
        if self.mode == "float":
            return jsonable(np.array([a], dtype=np.uint64).view(np.float64)[0])
        raw = np.array([a], dtype=np.uint64).view(np.int64)
        if isinstance(dtype, np.dtype) and dtype.kind in "mM":
            return jsonable(pd.Series(raw.view(dtype)).iloc[0])
        if pd.api.types.is_bool_dtype(dtype):
            return bool(raw[0])
        if isinstance(dtype, np.dtype) and dtype.kind == "u":
            return int(raw.view(np.uint64)[0])
        return int(raw[0])


def _canonical(s: pd.Series) -> pd.Series:
    if isinstance(s.dtype, np.dtype) and s.dtype.kind == "f":
        v = s.to_numpy(dtype=np.float64) + 0.0
        v[np.isnan(v)] = np.nan
        return pd.Series(v, name=s.name)
    return s.reset_index(drop=True)


def _hash_codes(batch: pd.DataFrame, columns: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    parts = [_canonical(batch[c]) for c in columns]
    obj: pd.Series | pd.DataFrame = parts[0] if len(parts) == 1 else pd.concat(parts, axis=1)
    try:
        a = pd.util.hash_pandas_object(obj, index=False).to_numpy(dtype=np.uint64)
        b = pd.util.hash_pandas_object(obj, index=False, hash_key=_SECOND_HASH_KEY).to_numpy(dtype=np.uint64)
    except TypeError as exc:
        names = ", ".join(map(repr, columns))
        raise CheckInputError(f"key columns {names} hold values that cannot be hashed: {exc}") from exc
    return a, b


# -- spilling -------------------------------------------------------------------------------------
class KeySpill:
    """Records partitioned by prefix: in memory up to ``spill_bytes``, then in files of a temporary directory.

    ``directory`` defaults to the system's temporary directory (``TMPDIR``).
    Call :meth:`close` to remove the files.

    >>> spill = KeySpill(spill_bytes=100)
    >>> spill.add(records(np.array([7, 7, 9], dtype=np.uint64), None, 0))
    >>> summary = [dup_summary(spill.part(p)) for p in range(PREFIXES)]
    >>> sum(s.extra for s in summary), spill.rows
    (1, 3)
    >>> spill.close()
    """

    def __init__(self, spill_bytes: int = SPILL_BYTES, directory: str | None = None) -> None:
        self.spill_bytes = spill_bytes
        self.directory = directory
        self._memory: list[list[np.ndarray]] = [[] for _ in range(PREFIXES)]
        self._held = 0
        self._dir: str | None = None
        self.rows = 0

    def add(self, recs: np.ndarray) -> None:
        if len(recs):
            self.add_parts(partition(recs))

    def add_parts(self, parts: list[np.ndarray]) -> None:
        """Records already split by :func:`partition`."""
        for p, part in enumerate(parts):
            if len(part):
                self._memory[p].append(part)
                self.rows += len(part)
                self._held += part.nbytes
        if self._held > self.spill_bytes:
            self._flush()

    def _flush(self) -> None:
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="pipewarden-keys-", dir=self.directory)
        for p, parts in enumerate(self._memory):
            if parts:
                with open(os.path.join(self._dir, f"{p:02x}"), "ab") as f:
                    for part in parts:
                        np.ascontiguousarray(part).tofile(f)  # no copy as bytes
                parts.clear()
        self._held = 0

    def part(self, p: int) -> np.ndarray:
        """Every record of prefix ``p``, in the order they were added."""
        chunks = []
        if self._dir is not None:
            path = os.path.join(self._dir, f"{p:02x}")
            if os.path.exists(path):
                chunks.append(np.fromfile(path, dtype=RECORD))
        chunks += self._memory[p]
        if not chunks:
            return np.empty(0, dtype=RECORD)
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self._memory = [[] for _ in range(PREFIXES)]


# -- summaries --------------------------------------------------------------------------------------
def _group(recs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Records grouped by key: those whose key is theirs alone, and the others sorted, with each group's start and size.

    One sort by ``a``; only the records that share an ``a`` (repeats, or the
    rare hash collision) are sorted again by ``(a, b)``.
    """
    a = recs["a"]
    order = np.argsort(a)
    a_s = a[order]
    same = a_s[1:] == a_s[:-1]
    shared = np.zeros(len(a), dtype=bool)
    shared[1:] |= same
    shared[:-1] |= same
    alone = _take(recs, order[~shared])
    sub = _take(recs, order[shared])
    sub = _take(sub, np.lexsort((sub["b"], sub["a"])))
    if not len(sub):
        return alone, sub, np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    new = np.ones(len(sub), dtype=bool)
    new[1:] = (sub["a"][1:] != sub["a"][:-1]) | (sub["b"][1:] != sub["b"][:-1])
    starts = np.flatnonzero(new)
    return alone, sub, starts, np.diff(np.append(starts, len(sub)))


def _firsts(recs: np.ndarray, starts: np.ndarray, which: np.ndarray) -> list[tuple[int, int, int]]:
    """(first position, a, b) of the chosen groups, the EXAMPLES with the smallest first position."""
    if not which.any():
        return []
    first = np.minimum.reduceat(positions(recs), starts)[which]
    a, b = recs["a"][starts[which]], recs["b"][starts[which]]
    keep = np.argsort(first, kind="stable")[:EXAMPLES]
    return [(int(first[i]), int(a[i]), int(b[i])) for i in keep]


@dataclass
class DupSummary:
    """Repeated keys of one or more partitions: counts, the first repeated keys, the first rows involved."""

    rows: int = 0
    distinct: int = 0
    involved: int = 0
    groups: int = 0
    #: (first position, a, b) of repeated keys, the EXAMPLES with the smallest first position
    firsts: list[tuple[int, int, int]] = field(default_factory=list)
    #: positions of the first rows involved in a repeat (up to 10)
    involved_positions: list[int] = field(default_factory=list)

    @property
    def extra(self) -> int:
        return self.rows - self.distinct

    def combine(self, other: DupSummary) -> DupSummary:
        return DupSummary(
            self.rows + other.rows,
            self.distinct + other.distinct,
            self.involved + other.involved,
            self.groups + other.groups,
            sorted(self.firsts + other.firsts)[:EXAMPLES],
            sorted(self.involved_positions + other.involved_positions)[:10],
        )


def dup_summary(recs: np.ndarray) -> DupSummary:
    """How keys repeat among ``recs`` (all of side 0)."""
    alone, sub, starts, counts = _group(recs)
    rep = counts > 1
    if not rep.any():
        return DupSummary(len(recs), len(alone) + len(starts))
    involved = positions(sub)[np.repeat(rep, counts)]
    smallest = np.sort(np.partition(involved, min(9, len(involved) - 1))[:10])
    return DupSummary(
        rows=len(recs),
        distinct=len(alone) + len(starts),
        involved=int(counts[rep].sum()),
        groups=int(rep.sum()),
        firsts=_firsts(sub, starts, rep),
        involved_positions=[int(x) for x in smallest],
    )


@dataclass
class MissingSummary:
    """Keys of side 1 (a source) absent from side 0 (the checked table): rows, keys, the first missing keys."""

    rows: int = 0
    keys: int = 0
    #: (first position in the source, a, b) of missing keys, the EXAMPLES with the smallest position
    firsts: list[tuple[int, int, int]] = field(default_factory=list)

    def combine(self, other: MissingSummary) -> MissingSummary:
        firsts = sorted(self.firsts + other.firsts)[:EXAMPLES]
        return MissingSummary(self.rows + other.rows, self.keys + other.keys, firsts)


def missing_summary(recs: np.ndarray) -> MissingSummary:
    """Rows of side 1 whose key has no record on side 0, and how many distinct keys they are."""
    alone, sub, starts, counts = _group(recs)
    lone = alone[sides(alone) == 1]  # a source row whose key nothing else has: missing
    lone_pos = positions(lone)
    firsts = [(int(p), int(a), int(b)) for p, a, b in zip(lone_pos, lone["a"], lone["b"], strict=True)]
    firsts = sorted(firsts)[:EXAMPLES]
    rows = keys = len(lone)
    if len(sub):
        on_target = np.add.reduceat((sides(sub) == 0).astype(np.int64), starts)
        missing = on_target == 0  # every record of the key is from the source
        rows += int(counts[missing].sum())
        keys += int(missing.sum())
        firsts = sorted(firsts + _firsts(sub, starts, missing))[:EXAMPLES]
    return MissingSummary(rows, keys, firsts)
