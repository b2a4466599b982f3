"""A run directory read back into memory: the trace as a DataFrame and run.json as a dict.

Only files are read, so runs made on another machine (or by another version) load the
same way; the kinds, their fields and the argument columns holding them come from the
trace file's own metadata.

The trace loads narrow (see `read_trace`): memory grows with the kinds, columns and time
window asked for, not with the number of field names. `Run.kind(name)` gives one kind with
its fields by name, reading it from the file if the loaded trace left it out.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from analysis.plot import RunPlots
from analysis.trace_metadata import (
    DEFAULT_ARGS,
    METADATA_KEY,
    TRACE_ATTR,
    WIDE_VERSIONS,
    TraceMetadata,
    TraceMetadataError,
)
from analysis.views import BASE_COLUMNS, kind_view

__all__ = ["RUN_FILE", "TRACE_FILE", "Run", "load_run", "read_kind", "read_trace", "select_kinds"]

TRACE_FILE = "trace.parquet"
RUN_FILE = "run.json"
#: The file's column of each record's position in time order (version 3).
SEQ_COLUMN = "seq"
_SMALL_INTS = ("cpu", "dom", "vcpu")

#: What a trace can be read from: a path or an open binary file.
Source = str | Path | IO[bytes]


@dataclass(frozen=True)
class Run:
    """One finished run: `trace` (one row per record, narrow) and `meta` (run.json).

    `path` is the trace file when the run was loaded from one; `kinds` and `columns` what
    `trace` was loaded with (None: all of them).
    """

    trace: pd.DataFrame
    meta: dict[str, Any]
    path: Path | None = None
    kinds: tuple[str, ...] | None = None
    columns: tuple[str, ...] | None = None

    @property
    def domains(self) -> dict[int, str]:
        """Domain id -> name, from run.json, in id order."""
        names = self.meta.get("domains", {})
        return {int(k): str(v) for k, v in sorted(names.items(), key=lambda kv: int(kv[0]))}

    @property
    def sim_ns(self) -> int:
        """Simulated nanoseconds the run covered."""
        return int(self.meta["sim_ns"])

    @property
    def plot(self) -> RunPlots:
        """This run's plots (`analysis.plot`), e.g. `run.plot.gantt(start=0, end=5_000_000)`."""
        return RunPlots(self)

    def kind(
        self,
        name: str,
        columns: Sequence[str] | None = None,
        start: int | None = None,
        end: int | None = None,
    ) -> pd.DataFrame:
        """Records of one kind: t_ns, cpu, dom, vcpu, its fields by name (int64) and text
        if it has one (`columns` keeps only those), in time order, inside [start, end).

        From the loaded trace when it holds them, else read from the trace file (only that
        kind's row groups)."""
        loaded = (self.kinds is None or name in self.kinds) and self.columns is None
        if not loaded and self.path is not None:
            return read_kind(self.path, name, columns=columns, start=start, end=end)
        view = kind_view(self.trace, name, columns)
        if start is not None or end is not None:
            t = self.trace["t_ns"].loc[view.index].to_numpy()
            keep = np.ones(len(view), dtype=bool)
            if start is not None:
                keep &= t >= start
            if end is not None:
                keep &= t < end
            view = view[keep]
        return view


def _stored_metadata(schema: pa.Schema, source: object) -> dict[str, Any]:
    stored = (schema.metadata or {}).get(METADATA_KEY)
    if stored is None:
        raise TraceMetadataError(
            f"{source}: no {METADATA_KEY.decode()!r} Parquet metadata (schema version, kinds, "
            "value names); not a trace written by xen970's recorder"
        )
    raw: dict[str, Any] = json.loads(stored)
    return raw


def select_kinds(meta: TraceMetadata, kinds: Iterable[str] | None) -> list[str] | None:
    """Kind names matching `kinds` (names or shell patterns such as 'sched.*'), in the
    trace's kind order; None for all. A name or pattern matching no kind is refused."""
    if kinds is None:
        return None
    wanted = [kinds] if isinstance(kinds, str) else list(kinds)
    known = list(meta.kinds)
    chosen: set[str] = set()
    for pattern in wanted:
        found = fnmatch.filter(known, pattern)
        if not found:
            raise KeyError(f"no record kind matches {pattern!r}; known: {', '.join(known)}")
        chosen.update(found)
    return [k for k in known if k in chosen]


def _frame_columns(
    meta: TraceMetadata,
    chosen: list[str] | None,
    columns: Sequence[str] | None,
    extra: Sequence[str] = (),
) -> list[str]:
    """The narrow columns to load, in layout order: those asked for (a field name stands
    for the argument columns holding it in the chosen kinds), always with `kind`; by
    default every column the chosen kinds use. `extra` are the file's columns beyond the
    layout (a sweep's parameters), loaded by default or by name."""
    layout = [*BASE_COLUMNS, *meta.args, "text", *extra]
    kinds = list(meta.kinds) if chosen is None else chosen
    if columns is None:
        if chosen is None:
            return layout
        width = max((len(meta.kinds[k].fields) for k in kinds), default=0)
        text = any(meta.kinds[k].text is not None for k in kinds)
        return [*BASE_COLUMNS, *meta.args[:width], *(["text"] if text else []), *extra]
    picked = {"kind"}
    for name in [columns] if isinstance(columns, str) else columns:
        if name in layout:
            picked.add(name)
            continue
        args = {meta.arg_of(k, name) for k in kinds if name in meta.kinds[k].fields}
        if not args:
            raise KeyError(f"no column or field {name!r} in the selected kinds")
        picked.update(args)
    return [c for c in layout if c in picked]


def _row_groups(
    pf: pq.ParquetFile, chosen: list[str] | None, start: int | None, end: int | None
) -> tuple[list[int], bool]:
    """Row groups that can hold records of the chosen kinds inside [start, end), from
    their statistics, and whether each kept group holds one kind only."""
    md = pf.metadata
    names = md.schema.names
    kind_at, t_at = names.index("kind"), names.index("t_ns")
    groups: list[int] = []
    single = True
    for g in range(md.num_row_groups):
        rg = md.row_group(g)
        if chosen is not None:
            st = rg.column(kind_at).statistics
            if st is None or not st.has_min_max:
                single = False
            else:
                lo, hi = st.min, st.max
                if not any(lo <= k <= hi for k in chosen):
                    continue
                single = single and lo == hi
        st = rg.column(t_at).statistics
        known = st is not None and st.has_min_max
        if known and (
            (start is not None and st.max < start) or (end is not None and st.min >= end)
        ):
            continue
        groups.append(g)
    return groups, single


def _kind_codes_mask(column: pa.ChunkedArray, chosen: list[str]) -> np.ndarray:
    """Rows of a dictionary-encoded kind column whose kind is chosen."""
    parts = []
    for chunk in column.chunks:
        codes = [i for i, k in enumerate(chunk.dictionary.to_pylist()) if k in chosen]
        parts.append(np.isin(chunk.indices.to_numpy(zero_copy_only=False), codes))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)


def _keep_rows(
    table: pa.Table, chosen: list[str] | None, start: int | None, end: int | None
) -> np.ndarray | None:
    """Rows of a row group inside the kinds (when its `kind` column was read) and the
    window; None for all of them."""
    keep = np.ones(table.num_rows, dtype=bool)
    if chosen is not None and "kind" in table.column_names:
        keep &= _kind_codes_mask(table.column("kind"), chosen)
    if (start is not None or end is not None) and "t_ns" in table.column_names:
        t = table.column("t_ns").to_numpy()
        if start is not None:
            keep &= t >= start
        if end is not None:
            keep &= t < end
    return None if keep.all() else keep


def _dictionary_codes(column: pa.ChunkedArray, categories: list[str]) -> np.ndarray:
    """A dictionary column's values as int32 codes into `categories` (extended with the
    values it has not seen yet), -1 for null."""
    parts = []
    for chunk in column.chunks:
        known = {name: i for i, name in enumerate(categories)}
        lookup = np.empty(len(chunk.dictionary), dtype=np.int32)
        for i, name in enumerate(chunk.dictionary.to_pylist()):
            if name not in known:
                known[name] = len(categories)
                categories.append(name)
            lookup[i] = known[name]
        indices = pc.fill_null(chunk.indices, 0).to_numpy(zero_copy_only=False)
        codes = lookup[indices] if len(lookup) else np.zeros(len(chunk), dtype=np.int32)
        if chunk.null_count:
            codes[chunk.is_null().to_numpy(zero_copy_only=False)] = -1
        parts.append(codes)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)


def _read_narrow(
    pf: pq.ParquetFile,
    meta: TraceMetadata,
    chosen: list[str] | None,
    cols: list[str],
    start: int | None,
    end: int | None,
) -> pd.DataFrame:
    """Read a version-3 file: only the row groups and columns needed, rows back in time
    order (`seq`).

    Two passes over the chosen row groups, so that memory peaks at the frame and one row
    group: the first reads `seq` (and what the kinds and window need) to find each kept
    row's place in time order; the second scatters each group's columns into the frame's
    arrays."""
    groups, single = _row_groups(pf, chosen, start, end)
    schema = pf.schema_arrow
    if any(not _narrow_type(schema.field(name).type) for name in cols):
        return _read_narrow_table(pf, groups, single, chosen, cols, start, end)
    keys = [SEQ_COLUMN]
    if chosen is not None and not single:
        keys.append("kind")
    if start is not None or end is not None:
        keys.append("t_ns")
    kept: list[np.ndarray | None] = []
    seqs: list[np.ndarray] = []
    for g in groups:
        table = pf.read_row_group(g, columns=keys)
        keep = _keep_rows(table, chosen, start, end)
        seq = table.column(SEQ_COLUMN).to_numpy()
        seqs.append(seq if keep is None else seq[keep])
        kept.append(keep)
    seq = np.concatenate(seqs) if seqs else np.zeros(0, dtype=np.int64)
    del seqs
    n = len(seq)
    # Each row group is in time order: a stable sort merges the runs in ~linear time.
    order = np.argsort(seq, kind="stable")
    del seq
    dest = np.empty(n, dtype=np.int32 if n < 1 << 31 else np.int64)
    dest[order] = np.arange(n, dtype=dest.dtype)
    del order
    out = {name: np.empty(n, dtype=_narrow_type(schema.field(name).type)) for name in cols}
    categories: dict[str, list[str]] = {
        name: [] for name in cols if pa.types.is_dictionary(schema.field(name).type)
    }
    at = 0
    for g, keep in zip(groups, kept, strict=True):
        table = pf.read_row_group(g, columns=cols)
        if keep is not None:
            table = table.filter(pa.array(keep))
        rows = dest[at : at + table.num_rows]
        at += table.num_rows
        for name in cols:
            column = table.column(name)
            if name in categories:
                out[name][rows] = _dictionary_codes(column, categories[name])
            else:
                out[name][rows] = column.to_numpy()
        del table
    data: dict[str, object] = {}
    for name in cols:
        if name in categories:
            index = pd.Index(categories[name], dtype="str")
            data[name] = pd.Categorical.from_codes(out.pop(name), categories=index)
        else:
            data[name] = out.pop(name)
    return pd.DataFrame(data, copy=False)


def _narrow_type(t: pa.DataType) -> Any:
    """The numpy type the two-pass reader gives a column: its own for integers, int32
    codes for dictionaries; None for anything else (a sweep's parameter columns)."""
    if pa.types.is_dictionary(t):
        return np.int32
    if pa.types.is_integer(t):
        return t.to_pandas_dtype()
    return None


def _read_narrow_table(
    pf: pq.ParquetFile,
    groups: list[int],
    single: bool,
    chosen: list[str] | None,
    cols: list[str],
    start: int | None,
    end: int | None,
) -> pd.DataFrame:
    """The one-table reader, for files with columns beyond the trace's (a sweep's part)."""
    window = start is not None or end is not None
    needed = [SEQ_COLUMN, *cols] + (["t_ns"] if window and "t_ns" not in cols else [])
    if groups:
        table = pf.read_row_groups(groups, columns=needed)
    else:
        table = pf.schema_arrow.empty_table().select(needed)
    keep = _keep_rows(table, None if single else chosen, start, end)
    if keep is not None:
        table = table.filter(pa.array(keep))
    seq = table.column(SEQ_COLUMN).to_numpy()
    df = table.select(cols).to_pandas(split_blocks=True, self_destruct=True)
    del table
    if seq.size > 1 and bool((seq[1:] < seq[:-1]).any()):
        order = np.argsort(seq, kind="stable")
        df = df.take(order).reset_index(drop=True)
    return df


def _int_or_string(t: pa.DataType) -> Any:
    """Arrow -> pandas dtypes of a version 1-2 file: nullable Int64 fields, strings."""
    if t == pa.int64():
        return pd.Int64Dtype()
    if t == pa.string():
        return pd.StringDtype()
    return None


def _narrow_from_wide(table: pa.Table, meta: TraceMetadata, extra: Sequence[str]) -> pd.DataFrame:
    """A version 1-2 table (one column per field name) in the narrow layout, with the
    `extra` columns as they are."""
    df = table.to_pandas(types_mapper=_int_or_string)
    codes = df["kind"].cat.set_categories(list(meta.kinds)).cat.codes.to_numpy()
    args = [np.zeros(len(df), dtype=np.int64) for _ in DEFAULT_ARGS]
    for k, layout in enumerate(meta.kinds.values()):
        sel = codes == k
        if layout.fields and sel.any():
            for p, field in enumerate(layout.fields):
                args[p][sel] = df[field].to_numpy(dtype=np.int64, na_value=0)[sel]
    text = df["text"].astype(object)
    out: dict[str, object] = {"t_ns": df["t_ns"].to_numpy(dtype=np.int64)}
    for name in _SMALL_INTS:
        out[name] = df[name].to_numpy(dtype=np.int16)
    out["kind"] = pd.Categorical.from_codes(codes, categories=list(meta.kinds))
    out.update(zip(DEFAULT_ARGS, args, strict=True))
    out["text"] = pd.Categorical(text.where(text.notna(), None))
    for name in extra:
        out[name] = df[name]
    return pd.DataFrame(out)


def _select_rows(
    df: pd.DataFrame, chosen: list[str] | None, start: int | None, end: int | None
) -> pd.DataFrame:
    keep = np.ones(len(df), dtype=bool)
    if chosen is not None:
        keep &= df["kind"].isin(chosen).to_numpy(dtype=bool)
    t = df["t_ns"].to_numpy()
    if start is not None:
        keep &= t >= start
    if end is not None:
        keep &= t < end
    return df if keep.all() else df[keep].reset_index(drop=True)


def read_trace(
    source: Source,
    *,
    kinds: Iterable[str] | None = None,
    columns: Sequence[str] | None = None,
    start: int | None = None,
    end: int | None = None,
) -> pd.DataFrame:
    """Read a trace.parquet file into the narrow layout `Recorder.to_dataframe` makes.

    One row per record in time order: t_ns (int64), cpu, dom, vcpu (int16), kind
    (categorical), the argument columns a0..a3 (int64: a kind's field i in a<i>, 0 past
    its fields) and text (categorical). `df.xen.kind(name)` gives a kind's fields by name.

    - `kinds`: kind names or patterns ('sched.*'); only their row groups are read, and by
      default only the argument columns they use (and text if one of them has it);
    - `columns`: columns to load (a field name loads the argument columns holding it);
      `kind` always comes;
    - `start`, `end`: the window [start, end) of simulated ns; row groups outside it are
      skipped.

    Version 1-2 files (one column per field) are read and converted. A file without the
    trace's metadata is refused.
    """
    pf = pq.ParquetFile(source)
    raw = _stored_metadata(pf.schema_arrow, source)
    meta = TraceMetadata.from_dict(raw)
    chosen = select_kinds(meta, kinds)
    if meta.version in WIDE_VERSIONS:
        meta = TraceMetadata(meta.version, meta.kinds, meta.value_names, DEFAULT_ARGS)
        raw = {**raw, "args": list(DEFAULT_ARGS), "arg_type": "int64"}
        known = {*BASE_COLUMNS, *meta.fields(), "text"}
        extra = [c for c in pf.schema_arrow.names if c not in known]
        cols = _frame_columns(meta, chosen, columns, extra)
        narrow = _narrow_from_wide(pf.read(), meta, extra)
        df = _select_rows(narrow, chosen, start, end)[cols]
    else:
        known = {SEQ_COLUMN, *BASE_COLUMNS, *meta.args, "text"}
        extra = [c for c in pf.schema_arrow.names if c not in known]
        cols = _frame_columns(meta, chosen, columns, extra)
        df = _read_narrow(pf, meta, chosen, cols, start, end)
    kinds_in_order = list(meta.kinds)
    if list(df["kind"].cat.categories) != kinds_in_order:
        df["kind"] = df["kind"].cat.set_categories(kinds_in_order)
    if "text" in df.columns and len(df["text"].cat.categories) == 0:
        df["text"] = df["text"].cat.set_categories(pd.Index([], dtype="str"))
    df.attrs[TRACE_ATTR] = raw
    return df


def read_kind(
    source: Source,
    name: str,
    *,
    columns: Sequence[str] | None = None,
    start: int | None = None,
    end: int | None = None,
) -> pd.DataFrame:
    """One kind's records from a trace file, fields by name (see `Run.kind`), reading only
    that kind's row groups and the columns asked for."""
    df = read_trace(source, kinds=[name], columns=columns, start=start, end=end)
    view = kind_view(df, name, columns)
    view.attrs = dict(df.attrs)
    return view


def load_run(
    directory: str | Path,
    *,
    kinds: Iterable[str] | None = None,
    columns: Sequence[str] | None = None,
    start: int | None = None,
    end: int | None = None,
) -> Run:
    """Load `trace.parquet` and `run.json` from a run directory; `kinds`, `columns`,
    `start` and `end` select what of the trace to load (see `read_trace`); `Run.kind`
    still reads any kind."""
    d = Path(directory)
    for name in (TRACE_FILE, RUN_FILE):
        if not (d / name).is_file():
            raise FileNotFoundError(f"{d}: not a run directory (no {name})")
    meta = json.loads((d / RUN_FILE).read_text(encoding="utf-8"))
    path = d / TRACE_FILE
    trace = read_trace(path, kinds=kinds, columns=columns, start=start, end=end)
    loaded = None
    if kinds is not None:
        loaded = tuple(select_kinds(TraceMetadata.from_dict(trace.attrs[TRACE_ATTR]), kinds))
    if start is not None or end is not None:
        loaded = ()  # a window: other times are not loaded, so kind() reads the file
    return Run(
        trace=trace,
        meta=meta,
        path=path,
        kinds=loaded,
        columns=None if columns is None else tuple(columns),
    )
