"""Named fields back from a trace frame: per-kind views, one field across kinds, the wide
layout.

A trace frame is narrow (schema version 3, what `read_trace` and `Recorder.to_dataframe`
give): a kind's field `i` is in the argument column `args[i]` (`a0`..`a3`), as the trace's
metadata says. These functions give the fields back by name. They also accept a wide frame
(one column per field name, as version 2 was read), so code written against either works.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from analysis.trace_metadata import TraceMetadata, trace_metadata

__all__ = ["BASE_COLUMNS", "field_column", "field_values", "kind_mask", "kind_view", "wide"]

#: Columns every record has, whatever its kind.
BASE_COLUMNS = ("t_ns", "cpu", "dom", "vcpu", "kind")
_IDS = ("t_ns", "cpu", "dom", "vcpu")


def _column_of(df: pd.DataFrame, meta: TraceMetadata, kind: str, field: str) -> str:
    """The frame's column holding `field` of `kind`: the field's own (wide) or its
    argument column (narrow)."""
    if field in df.columns:
        return field
    return meta.arg_of(kind, field)


def field_column(df: pd.DataFrame, kind: str, field: str) -> str:
    """The column of the trace frame `df` holding `field` of `kind` records ('a0' for
    sched.runstate's state in a narrow frame, 'state' in a wide one)."""
    if field in df.columns:
        return field
    return trace_metadata(df).arg_of(kind, field)


def kind_mask(df: pd.DataFrame, kinds: Iterable[str]) -> np.ndarray:
    """Boolean mask (numpy) of the rows whose kind is one of `kinds`."""
    column = df["kind"]
    wanted = list(kinds)
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.categories.get_indexer(wanted)
        codes = codes[codes >= 0]
        return np.isin(column.cat.codes.to_numpy(), codes)
    return column.isin(wanted).to_numpy(dtype=bool, na_value=False)


def kind_view(df: pd.DataFrame, name: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows of one kind with t_ns, cpu, dom, vcpu, that kind's fields by name (int64) and
    text if it has one; `columns` keeps only those (columns the frame lacks are left out).
    The index is the frame's."""
    meta = trace_metadata(df)
    if name not in meta.kinds:
        raise KeyError(f"unknown record kind {name!r}; known: {', '.join(meta.kinds)}")
    layout = meta.kinds[name]
    names = [*_IDS, *layout.fields] + (["text"] if layout.text is not None else [])
    if columns is not None:
        names = [c for c in names if c in columns]
    rows = df.loc[kind_mask(df, [name])]
    out: dict[str, object] = {}
    for col in names:
        source = _column_of(df, meta, name, col) if col in layout.fields else col
        if source not in rows.columns:
            continue
        values = rows[source]
        out[col] = values.astype("int64") if col in layout.fields else values
    return pd.DataFrame(out, index=rows.index)


def field_values(df: pd.DataFrame, field: str) -> pd.Series:
    """One field over every row (nullable Int64): its value on rows whose kind has it,
    <NA> on the others."""
    if field in df.columns:
        return df[field].astype("Int64")
    meta = trace_metadata(df)
    if field not in meta.fields():
        raise KeyError(f"no record kind of this trace has a field {field!r}")
    values = np.zeros(len(df), dtype=np.int64)
    absent = np.ones(len(df), dtype=bool)
    for name, layout in meta.kinds.items():
        if field in layout.fields:
            sel = kind_mask(df, [name])
            arg = meta.arg_of(name, field)
            if sel.any():
                values[sel] = df[arg].to_numpy(dtype=np.int64)[sel]
            absent[sel] = False
    return pd.Series(pd.arrays.IntegerArray(values, absent), index=df.index, name=field)


def wide(df: pd.DataFrame, kinds: Iterable[str] | None = None) -> pd.DataFrame:
    """The rows of `kinds` (default all) in the wide layout of schema version 2: the
    common columns, one nullable Int64 column per field name of those kinds (<NA> on rows
    whose kind lacks it) and text as a nullable string. Costs ~9 bytes a row per field
    column: ask for the kinds you need."""
    meta = trace_metadata(df)
    chosen = list(meta.kinds) if kinds is None else list(kinds)
    unknown = [k for k in chosen if k not in meta.kinds]
    if unknown:
        raise KeyError(f"unknown record kind {unknown[0]!r}; known: {', '.join(meta.kinds)}")
    rows = df if kinds is None else df.loc[kind_mask(df, chosen)]
    out = rows[[c for c in BASE_COLUMNS if c in rows.columns]].copy()
    for field in meta.fields(chosen):
        out[field] = field_values(rows, field)
    if "text" in rows.columns:
        text = rows["text"].astype(object)
        out["text"] = pd.array(text.where(text.notna(), None), dtype=pd.StringDtype())
    out.attrs = dict(df.attrs)
    return out
