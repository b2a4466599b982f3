"""The one recorder every layer emits trace records through.

`emit` is on the hot path of the simulation (several calls per simulated event), so it
does one thing, in C: append the record to int64 columns (`framework/trace/_emit.c`).
Checking and typing happen once, when the records are turned into columns
(`to_dataframe`, `write`). A disabled recorder's `emit` is a do-nothing function, so call
sites need no `if`.

The trace is narrow (schema version 3): the common columns (time, CPU, domain, VCPU, kind),
the generic argument columns `a0`..`a3` holding each kind's fields in order, and a text
column. The file groups rows by kind (each row group holds one kind, in time order) and
keeps each record's position in time order in `seq`, so a reader asking for some kinds
reads only their row groups and puts the rows back in time order.

The trace carries its own description (`metadata`: schema version, kinds with their fields
and text, names of enumerated field values), in the Parquet file's metadata and in
`DataFrame.attrs`, so that analysis needs nothing from the simulator to read it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from framework.errors import TraceError
from framework.trace._emit import Emitter
from framework.trace.schema import (
    ARG_COLUMNS,
    BASE_COLUMNS,
    FIELD_ENUMS,
    KINDS,
    SCHEMA_VERSION,
)

__all__ = [
    "ROW_GROUP_ROWS",
    "SEQ_COLUMN",
    "TRACE_ATTR",
    "TRACE_FILE",
    "TRACE_METADATA_KEY",
    "Emit",
    "Record",
    "Recorder",
    "trace_arrow_schema",
]

TRACE_FILE: Final = "trace.parquet"
#: Parquet schema metadata key holding `Recorder.metadata()` as JSON.
TRACE_METADATA_KEY: Final = b"xen970.trace"
#: DataFrame.attrs key holding the same `Recorder.metadata()` dict.
TRACE_ATTR: Final = "xen970.trace"
#: The file's column of each record's position in time order (not in DataFrames).
SEQ_COLUMN: Final = "seq"
#: At most this many rows per row group (a kind with more gets several).
ROW_GROUP_ROWS: Final = 1 << 20

# (kind, t_ns, cpu, dom, vcpu, f0, f1, f2, f3, text)
Record = tuple[int, int, int, int, int, int, int, int, int, str | None]

_KIND_NAMES: Final = [kind.name for kind in KINDS]
_FIELD_COUNT: Final = np.array([len(kind.fields) for kind in KINDS], dtype=np.int64)
_HAS_TEXT: Final = np.array([kind.text is not None for kind in KINDS], dtype=bool)
_SMALL_IDS: Final = ("cpu", "dom", "vcpu")
# What Emitter.gather checks against (one byte per kind id) and the types it returns.
_NFIELDS: Final = bytes(len(kind.fields) for kind in KINDS)
_HAS_TEXT_BYTES: Final = bytes(kind.text is not None for kind in KINDS)
_GATHER_TYPES: Final = (
    np.int64,  # seq
    np.int64,  # t_ns
    np.int16,  # cpu
    np.int16,  # dom
    np.int16,  # vcpu
    np.int8,  # kind
    np.int64,  # a0
    np.int64,  # a1
    np.int64,  # a2
    np.int64,  # a3
    np.int32,  # text code
)
# Parquet writing: the integer columns delta-encoded (time and seq grow within a row
# group, ids and fields of one kind vary little: ~0.2 bytes a record after zstd, against
# ~0.8 plain), kind and text as dictionaries; statistics only where readers prune.
_DELTA: Final = "DELTA_BINARY_PACKED"
_WRITE_OPTIONS: Final[dict[str, object]] = {
    "compression": "zstd",
    "compression_level": 1,
    "use_dictionary": ["kind", "text"],
    "column_encoding": {
        name: _DELTA for name in (SEQ_COLUMN, "t_ns", "cpu", "dom", "vcpu", *ARG_COLUMNS)
    },
    "write_statistics": ["kind", "t_ns"],
}


class Emit(Protocol):
    """Signature of `Recorder.emit`."""

    def __call__(
        self,
        kind: int,
        t_ns: int,
        cpu: int,
        dom: int,
        vcpu: int,
        f0: int = 0,
        f1: int = 0,
        f2: int = 0,
        f3: int = 0,
        text: str | None = None,
    ) -> None: ...


def _discard(*args: object, **kwargs: object) -> None:
    """The emit of a disabled recorder."""


@dataclass(frozen=True)
class _Columns:
    """The records as checked, typed columns (numpy arrays) in one order: `seq` is each
    row's position in time order, `text` indexes `text_values` (-1 = no text)."""

    seq: np.ndarray
    t_ns: np.ndarray
    cpu: np.ndarray
    dom: np.ndarray
    vcpu: np.ndarray
    kind: np.ndarray
    args: list[np.ndarray]
    text: np.ndarray
    text_values: list[str]


def _first_bad(bad: np.ndarray, order: np.ndarray) -> int:
    """The emission index, among `bad` (a mask in emission order), of the record that
    comes first in time order."""
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    where = np.flatnonzero(bad)
    return int(where[np.argmin(rank[where])])


class Recorder:
    """Collects trace records in emission (= simulated time) order."""

    emit: Emit

    def __init__(
        self, enabled: bool = True, enums: Mapping[str, Sequence[str]] | None = None
    ) -> None:
        """`enums` names the codes of the enumerations of `FIELD_ENUMS` (enumeration ->
        names by code); the schema cannot, as it imports nothing of the layers it records."""
        #: The record store (C: no Python frame or object per record).
        self._store = Emitter()
        self._enabled = enabled
        self.emit = self._store if enabled else _discard
        given = dict(enums or {})
        unknown = sorted(set(given) - set(FIELD_ENUMS.values()))
        if unknown:
            raise TraceError(f"no field of the trace schema uses enumeration {unknown[0]!r}")
        self._value_names: dict[str, list[str]] = {
            field: [str(name) for name in given[enum]]
            for field, enum in FIELD_ENUMS.items()
            if enum in given
        }

    @property
    def enabled(self) -> bool:
        """False when records are being discarded."""
        return self._enabled

    @property
    def records(self) -> list[Record]:
        """The records in emission order as flat tuples (built on each call: keep the list
        rather than asking again in a loop)."""
        return self._store.records()  # type: ignore[no-any-return]

    def records_since(self, start: int) -> list[Record]:
        """The records emitted after the first `start` (see `len`)."""
        return self._store.records(start)  # type: ignore[no-any-return]

    def __len__(self) -> int:
        return len(self._store)

    def _raw_columns(self) -> list[np.ndarray]:
        """The nine int64 columns (kind, t_ns, cpu, dom, vcpu, f0..f3), emission order."""
        return [np.frombuffer(b, dtype=np.int64) for b in self._store.columns()]

    def counts(self) -> dict[str, int]:
        """Number of records per kind name, in schema order, kinds never emitted left out."""
        kinds = np.frombuffer(self._store.column(0), dtype=np.int64)
        if kinds.size and (kinds.min() < 0 or kinds.max() >= len(KINDS)):
            bad = int(np.flatnonzero((kinds < 0) | (kinds >= len(KINDS)))[0])
            raise TraceError(f"record {bad}: unknown kind id {kinds[bad]}")
        tally = np.bincount(kinds, minlength=len(KINDS))
        return {name: int(tally[k]) for k, name in enumerate(_KIND_NAMES) if tally[k]}

    def _columns(self, by_kind: bool) -> _Columns:
        """Check every record against the schema and build typed columns, in time order
        or (`by_kind`) grouped by kind id and in time order within a kind."""
        t_ns = np.frombuffer(self._store.column(1), dtype=np.int64)
        # Simulated-time order; records of the same instant keep their emission order (a
        # running slice emits ahead of the SimPy clock, so emission order is not time order).
        order = np.argsort(t_ns, kind="stable")
        del t_ns
        out = self._store.gather(order, _NFIELDS, _HAS_TEXT_BYTES, by_kind)
        if isinstance(out, int):
            raw = self._raw_columns()
            codes = np.frombuffer(self._store.text_codes(), dtype=np.int32)
            _check(raw, codes, order)
            raise TraceError(f"record {out}: breaks the trace schema")  # _check names it
        cols = [np.frombuffer(b, dtype=t) for b, t in zip(out, _GATHER_TYPES, strict=True)]
        return _Columns(
            seq=cols[0],
            t_ns=cols[1],
            cpu=cols[2],
            dom=cols[3],
            vcpu=cols[4],
            kind=cols[5],
            args=cols[6 : 6 + len(ARG_COLUMNS)],
            text=cols[10],
            text_values=self._store.text_values(),
        )

    def to_dataframe(self) -> pd.DataFrame:
        """The trace as a DataFrame in time order: the common columns, the argument columns
        `a0`..`a3` and text (categorical), as `analysis.read_trace` reads the file."""
        c = self._columns(by_kind=False)
        data: dict[str, object] = {
            "t_ns": c.t_ns,
            "cpu": c.cpu,
            "dom": c.dom,
            "vcpu": c.vcpu,
            "kind": pd.Categorical.from_codes(c.kind, categories=_KIND_NAMES),
        }
        for name, values in zip(ARG_COLUMNS, c.args, strict=True):
            data[name] = values
        data["text"] = pd.Categorical.from_codes(
            c.text, categories=pd.Index(c.text_values, dtype="str")
        )
        df = pd.DataFrame(data, copy=False)
        df.attrs[TRACE_ATTR] = self.metadata()
        return df

    def metadata(self) -> dict[str, object]:
        """What a reader needs to interpret the trace: the schema version, the argument
        columns and their type, each kind's fields (stored in the argument columns in
        that order) and text meaning (in id order), and the names of enumerated values."""
        return {
            "version": SCHEMA_VERSION,
            "args": list(ARG_COLUMNS),
            "arg_type": "int64",
            "kinds": [{"name": k.name, "fields": list(k.fields), "text": k.text} for k in KINDS],
            "value_names": {field: list(names) for field, names in self._value_names.items()},
        }

    def to_arrow(self) -> pa.Table:
        """The trace as written to the file: rows grouped by kind id, `seq` first."""
        c = self._columns(by_kind=True)
        kinds = pa.array(_KIND_NAMES, type=pa.string())
        texts = pa.array(c.text_values, type=pa.string())
        arrays: list[pa.Array] = [
            pa.array(c.seq, type=pa.int64()),
            pa.array(c.t_ns, type=pa.int64()),
            pa.array(c.cpu, type=pa.int16()),
            pa.array(c.dom, type=pa.int16()),
            pa.array(c.vcpu, type=pa.int16()),
            pa.DictionaryArray.from_arrays(pa.array(c.kind, type=pa.int8()), kinds),
        ]
        arrays += [pa.array(values, type=pa.int64()) for values in c.args]
        text_codes = pa.array(c.text, type=pa.int32(), mask=c.text < 0)
        arrays.append(pa.DictionaryArray.from_arrays(text_codes, texts))
        return pa.Table.from_arrays(arrays, schema=trace_arrow_schema(self.metadata()))

    def write(self, directory: str | Path, row_group_rows: int = ROW_GROUP_ROWS) -> Path:
        """Write `trace.parquet` into `directory`, one kind per row group (of at most
        `row_group_rows` rows): the same records give the same bytes."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        path = out / TRACE_FILE
        table = self.to_arrow()
        kind = np.asarray(table.column("kind").combine_chunks().indices)
        bounds = np.flatnonzero(np.diff(kind)) + 1
        starts = [0, *bounds.tolist()]
        stops = [*bounds.tolist(), len(kind)]
        with pq.ParquetWriter(path, table.schema, **_WRITE_OPTIONS) as writer:
            for a, b in zip(starts, stops, strict=True):
                writer.write_table(table.slice(a, b - a), row_group_size=row_group_rows)
        return path


def _check(raw: list[np.ndarray], codes: np.ndarray, order: np.ndarray) -> None:
    """Refuse records that break the schema, naming the first in time order."""
    kind = raw[0]
    bad = (kind < 0) | (kind >= len(KINDS))
    if bad.any():
        i = _first_bad(bad, order)
        raise TraceError(f"record {_rank(i, order)}: unknown kind id {kind[i]}")
    nfields = _FIELD_COUNT[kind]
    for p in range(len(ARG_COLUMNS)):
        values = raw[5 + p]
        bad = (values != 0) & (nfields <= p)
        if bad.any():
            i = _first_bad(bad, order)
            raise TraceError(
                f"record {_rank(i, order)}: kind {_KIND_NAMES[kind[i]]} has no field f{p}, "
                f"got {values[i]}"
            )
    bad = (codes >= 0) & ~_HAS_TEXT[kind]
    if bad.any():
        i = _first_bad(bad, order)
        raise TraceError(
            f"record {_rank(i, order)}: kind {_KIND_NAMES[kind[i]]} has no text column"
        )
    for c, what in enumerate(_SMALL_IDS, start=2):
        wide = raw[c]
        bad = (wide < -(1 << 15)) | (wide >= 1 << 15)
        if bad.any():
            i = _first_bad(bad, order)
            raise TraceError(f"record {_rank(i, order)}: {what} {wide[i]} does not fit in int16")


def _rank(i: int, order: np.ndarray) -> int:
    """Position in time order of the record emitted `i`th."""
    return int(np.flatnonzero(order == i)[0])


def trace_arrow_schema(metadata: Mapping[str, object]) -> pa.Schema:
    """The trace file's Arrow schema, carrying `metadata` (`Recorder.metadata()`) as JSON."""
    base = [
        pa.field("t_ns", pa.int64(), nullable=False),
        pa.field("cpu", pa.int16(), nullable=False),
        pa.field("dom", pa.int16(), nullable=False),
        pa.field("vcpu", pa.int16(), nullable=False),
        pa.field("kind", pa.dictionary(pa.int8(), pa.string()), nullable=False),
    ]
    assert [f.name for f in base] == list(BASE_COLUMNS)
    args = [pa.field(name, pa.int64(), nullable=False) for name in ARG_COLUMNS]
    meta = {TRACE_METADATA_KEY: json.dumps(metadata, sort_keys=True)}
    seq = pa.field(SEQ_COLUMN, pa.int64(), nullable=False)
    text = pa.field("text", pa.dictionary(pa.int32(), pa.string()))
    return pa.schema([seq, *base, *args, text], metadata=meta)
