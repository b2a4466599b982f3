"""The one recorder every layer emits trace records through.

`emit` is on the hot path of the simulation (several calls per simulated event), so it
does one thing, in C: append a flat tuple to a list. Checking and typing happen once, when the
records are turned into columns (`to_dataframe`, `write`). A disabled recorder's `emit`
is a do-nothing function, so call sites need no `if`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from framework.trace._emit import Emitter
from framework.trace.schema import BASE_COLUMNS, FIELD_COLUMNS, KINDS, MAX_FIELDS

__all__ = [
    "KINDS_ATTR",
    "TRACE_FILE",
    "TRACE_METADATA_KEY",
    "Emit",
    "Record",
    "Recorder",
    "TraceError",
    "trace_arrow_schema",
]

TRACE_FILE: Final = "trace.parquet"
TRACE_METADATA_KEY: Final = b"xen970.trace"
# DataFrame.attrs key holding {kind name: {"fields": [...], "text": meaning or None}}.
KINDS_ATTR: Final = "xen970.kinds"

# (kind, t_ns, cpu, dom, vcpu, f0, f1, f2, f3, text)
Record = tuple[int, int, int, int, int, int, int, int, int, str | None]

_I64_MIN: Final = -(1 << 63)
_U64_END: Final = 1 << 64
_KIND_NAMES: Final = [kind.name for kind in KINDS]
_FIELD_COUNT: Final = np.array([len(kind.fields) for kind in KINDS], dtype=np.int64)
_HAS_TEXT: Final = np.array([kind.text is not None for kind in KINDS], dtype=bool)
# For each field column: the (kind id, position) pairs that carry it.
_FIELD_SOURCES: dict[str, list[tuple[int, int]]] = {
    name: [(k, kind.fields.index(name)) for k, kind in enumerate(KINDS) if name in kind.fields]
    for name in FIELD_COLUMNS
}


class TraceError(ValueError):
    """Records that break the schema (unknown kind, stray field or text, out of range)."""


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


def _time_of(record: tuple[object, ...]) -> int:
    return record[1]  # type: ignore[return-value]


def _discard(*args: object, **kwargs: object) -> None:
    """The emit of a disabled recorder."""


def _int64(values: Sequence[int], what: str) -> np.ndarray:
    """int64 array; values in [2**63, 2**64) keep their bit pattern (register images)."""
    try:
        return np.array(values, dtype=np.int64)
    except OverflowError:
        pass
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        if not _I64_MIN <= v < _U64_END:
            raise TraceError(f"record {i}: {what} value {v} does not fit in 64 bits")
        out[i] = v - _U64_END if v >= 1 << 63 else v
    return out


def _int16(values: Sequence[int], what: str) -> np.ndarray:
    wide = _int64(values, what)
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

    def __init__(self, enabled: bool = True) -> None:
        self._records: list[Record] = []
        self._enabled = enabled
        if enabled:
            # C (framework/trace/_emit.c): no Python frame per record.
            self.emit = Emitter(self._records)
        else:
            self.emit = _discard

    @property
    def enabled(self) -> bool:
        """False when records are being discarded."""
        return self._enabled

    @property
    def records(self) -> Sequence[Record]:
        """The raw records (not copied: do not modify)."""
        return self._records

    def __len__(self) -> int:
        return len(self._records)

    def counts(self) -> dict[str, int]:
        """Number of records per kind name, in schema order, kinds never emitted left out."""
        tally = Counter(r[0] for r in self._records)
        return {name: tally[k] for k, name in enumerate(_KIND_NAMES) if tally[k]}

    def _columns(self) -> _Columns:
        """Check every record against the schema and build typed columns."""
        # Simulated-time order; records of the same instant keep their emission order (a
        # running slice emits ahead of the SimPy clock, so emission order is not time order).
        records = sorted(self._records, key=_time_of)
        n = len(records)
        # One pass per column: much faster than zip(*records) on millions of tuples.
        cols: list[list[object]] = [[r[i] for r in records] for i in range(10)]
        kind = _int64(cols[0], "kind")  # type: ignore[arg-type]
        bad = np.flatnonzero((kind < 0) | (kind >= len(KINDS)))
        if bad.size:
            raise TraceError(f"record {bad[0]}: unknown kind id {kind[bad[0]]}")
        nfields = _FIELD_COUNT[kind]
        raw = [_int64(cols[5 + p], f"f{p}") for p in range(MAX_FIELDS)]  # type: ignore[arg-type]
        for p, values in enumerate(raw):
            stray = np.flatnonzero((values != 0) & (nfields <= p))
            if stray.size:
                i = stray[0]
                raise TraceError(
                    f"record {i}: kind {_KIND_NAMES[kind[i]]} has no field f{p}, got {values[i]}"
                )
        text: list[str | None] = list(cols[9])  # type: ignore[arg-type]
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
            t_ns=_int64(cols[1], "t_ns"),  # type: ignore[arg-type]
            cpu=_int16(cols[2], "cpu"),  # type: ignore[arg-type]
            dom=_int16(cols[3], "dom"),  # type: ignore[arg-type]
            vcpu=_int16(cols[4], "vcpu"),  # type: ignore[arg-type]
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
        df.attrs[KINDS_ATTR] = _kinds_layout()
        return df

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
        return pa.Table.from_arrays(arrays, schema=trace_arrow_schema())

    def write(self, directory: str | Path) -> Path:
        """Write `trace.parquet` into `directory`: the same records give the same bytes."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        path = out / TRACE_FILE
        pq.write_table(self.to_arrow(), path, compression="zstd", compression_level=3)
        return path


def trace_arrow_schema() -> pa.Schema:
    """The trace file's Arrow schema; its metadata lists the kinds with fields and text."""
    base = [
        pa.field("t_ns", pa.int64(), nullable=False),
        pa.field("cpu", pa.int16(), nullable=False),
        pa.field("dom", pa.int16(), nullable=False),
        pa.field("vcpu", pa.int16(), nullable=False),
        pa.field("kind", pa.dictionary(pa.int8(), pa.string()), nullable=False),
    ]
    assert [f.name for f in base] == list(BASE_COLUMNS)
    fields = [pa.field(name, pa.int64()) for name in FIELD_COLUMNS]
    kinds = [{"name": name, **layout} for name, layout in _kinds_layout().items()]
    meta = {TRACE_METADATA_KEY: json.dumps({"version": 1, "kinds": kinds}, sort_keys=True)}
    return pa.schema([*base, *fields, pa.field("text", pa.string())], metadata=meta)


def _kinds_layout() -> dict[str, dict[str, object]]:
    """Each kind's fields and text meaning, as stored in trace metadata and DataFrame attrs."""
    return {k.name: {"fields": list(k.fields), "text": k.text} for k in KINDS}
