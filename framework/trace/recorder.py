"""The one recorder every layer emits trace records through.

`emit` is on the hot path of the simulation (several calls per simulated event), so it
does one thing, in C: append the record to int64 columns (`framework/trace/_emit.c`).
Checking and typing happen once, when the records are turned into columns
(`to_dataframe`, `write`). A disabled recorder's `emit` is a do-nothing function, so call
sites need no `if`.

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
    BASE_COLUMNS,
    FIELD_COLUMNS,
    FIELD_ENUMS,
    KINDS,
    MAX_FIELDS,
    SCHEMA_VERSION,
)

__all__ = [
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

# (kind, t_ns, cpu, dom, vcpu, f0, f1, f2, f3, text)
Record = tuple[int, int, int, int, int, int, int, int, int, str | None]

_KIND_NAMES: Final = [kind.name for kind in KINDS]
_FIELD_COUNT: Final = np.array([len(kind.fields) for kind in KINDS], dtype=np.int64)
_HAS_TEXT: Final = np.array([kind.text is not None for kind in KINDS], dtype=bool)
# For each field column: the (kind id, position) pairs that carry it.
_FIELD_SOURCES: dict[str, list[tuple[int, int]]] = {
    name: [(k, kind.fields.index(name)) for k, kind in enumerate(KINDS) if name in kind.fields]
    for name in FIELD_COLUMNS
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


def _int16(wide: np.ndarray, what: str) -> np.ndarray:
    bad = np.flatnonzero((wide < -(1 << 15)) | (wide >= 1 << 15))
    if bad.size:
        raise TraceError(f"record {bad[0]}: {what} {wide[bad[0]]} does not fit in int16")
    return wide.astype(np.int16)


@dataclass(frozen=True)
class _Columns:
    """The records as checked, typed columns (numpy arrays; field masks True = absent)."""

    t_ns: np.ndarray
    cpu: np.ndarray
    dom: np.ndarray
    vcpu: np.ndarray
    kind: np.ndarray
    fields: dict[str, tuple[np.ndarray, np.ndarray]]
    text: list[str | None]


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

    def _columns(self) -> _Columns:
        """Check every record against the schema and build typed columns."""
        raw_cols = self._raw_columns()
        # Simulated-time order; records of the same instant keep their emission order (a
        # running slice emits ahead of the SimPy clock, so emission order is not time order).
        order = np.argsort(raw_cols[1], kind="stable")
        cols = [c[order] for c in raw_cols]
        texts = self._store.texts()
        n = len(order)
        kind = cols[0]
        bad = np.flatnonzero((kind < 0) | (kind >= len(KINDS)))
        if bad.size:
            raise TraceError(f"record {bad[0]}: unknown kind id {kind[bad[0]]}")
        nfields = _FIELD_COUNT[kind]
        raw = cols[5 : 5 + MAX_FIELDS]
        for p, values in enumerate(raw):
            stray = np.flatnonzero((values != 0) & (nfields <= p))
            if stray.size:
                i = stray[0]
                raise TraceError(
                    f"record {i}: kind {_KIND_NAMES[kind[i]]} has no field f{p}, got {values[i]}"
                )
        text: list[str | None] = [texts[i] for i in order.tolist()]
        has_text = np.fromiter((t is not None for t in text), dtype=bool, count=n)
        stray = np.flatnonzero(has_text & ~_HAS_TEXT[kind])
        if stray.size:
            i = stray[0]
            raise TraceError(f"record {i}: kind {_KIND_NAMES[kind[i]]} has no text column")
        fields: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name, sources in _FIELD_SOURCES.items():
            values = np.zeros(n, dtype=np.int64)
            absent = np.ones(n, dtype=bool)
            for k, p in sources:
                sel = kind == k
                values[sel] = raw[p][sel]
                absent[sel] = False
            fields[name] = (values, absent)
        return _Columns(
            t_ns=cols[1],
            cpu=_int16(cols[2], "cpu"),
            dom=_int16(cols[3], "dom"),
            vcpu=_int16(cols[4], "vcpu"),
            kind=kind.astype(np.int8),
            fields=fields,
            text=text,
        )

    def to_dataframe(self) -> pd.DataFrame:
        """The trace as a DataFrame with the documented columns and dtypes."""
        c = self._columns()
        data: dict[str, object] = {
            "t_ns": c.t_ns,
            "cpu": c.cpu,
            "dom": c.dom,
            "vcpu": c.vcpu,
            "kind": pd.Categorical.from_codes(c.kind, categories=_KIND_NAMES),
        }
        for name, (values, absent) in c.fields.items():
            data[name] = pd.arrays.IntegerArray(values, absent)
        data["text"] = pd.array(c.text, dtype=pd.StringDtype())
        df = pd.DataFrame(data, copy=False)
        df.attrs[TRACE_ATTR] = self.metadata()
        return df

    def metadata(self) -> dict[str, object]:
        """What a reader needs to interpret the trace: the schema version, each kind's
        fields and text meaning (in id order), and the names of enumerated field values."""
        return {
            "version": SCHEMA_VERSION,
            "kinds": [{"name": k.name, "fields": list(k.fields), "text": k.text} for k in KINDS],
            "value_names": {field: list(names) for field, names in self._value_names.items()},
        }

    def to_arrow(self) -> pa.Table:
        """The trace as an Arrow table with an explicit schema and the kinds as metadata."""
        c = self._columns()
        dictionary = pa.array(_KIND_NAMES, type=pa.string())
        arrays: list[pa.Array] = [
            pa.array(c.t_ns, type=pa.int64()),
            pa.array(c.cpu, type=pa.int16()),
            pa.array(c.dom, type=pa.int16()),
            pa.array(c.vcpu, type=pa.int16()),
            pa.DictionaryArray.from_arrays(pa.array(c.kind, type=pa.int8()), dictionary),
        ]
        arrays += [
            pa.array(values, type=pa.int64(), mask=absent) for values, absent in c.fields.values()
        ]
        arrays.append(pa.array(c.text, type=pa.string()))
        return pa.Table.from_arrays(arrays, schema=trace_arrow_schema(self.metadata()))

    def write(self, directory: str | Path) -> Path:
        """Write `trace.parquet` into `directory`: the same records give the same bytes."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        path = out / TRACE_FILE
        pq.write_table(self.to_arrow(), path, compression="zstd", compression_level=3)
        return path


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
    fields = [pa.field(name, pa.int64()) for name in FIELD_COLUMNS]
    meta = {TRACE_METADATA_KEY: json.dumps(metadata, sort_keys=True)}
    return pa.schema([*base, *fields, pa.field("text", pa.string())], metadata=meta)
