"""A run directory read back into memory: the trace as a DataFrame and run.json as a dict.

Only files are read, so runs made on another machine (or by another version) load the
same way; the kind categories come from the trace file's own metadata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from analysis.plot import RunPlots
from analysis.trace_metadata import METADATA_KEY, TRACE_ATTR, TraceMetadata, TraceMetadataError

__all__ = ["RUN_FILE", "TRACE_FILE", "Run", "load_run", "read_trace"]

TRACE_FILE = "trace.parquet"
RUN_FILE = "run.json"
_SMALL_INTS = ("cpu", "dom", "vcpu")


@dataclass(frozen=True)
class Run:
    """One finished run: `trace` (one row per record) and `meta` (run.json)."""

    trace: pd.DataFrame
    meta: dict[str, Any]

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


def _int_or_string(t: pa.DataType) -> Any:
    """Arrow -> pandas dtypes: nullable Int64 for fields, NA-aware strings for text."""
    if t == pa.int64():
        return pd.Int64Dtype()
    if t == pa.string():
        return pd.StringDtype()
    return None


def read_trace(path: str | Path) -> pd.DataFrame:
    """Read a trace.parquet file with the same dtypes and attrs `Recorder.to_dataframe`
    produces; a file without the trace's metadata is refused."""
    table = pq.read_table(path)
    stored = (table.schema.metadata or {}).get(METADATA_KEY)
    if stored is None:
        raise TraceMetadataError(
            f"{path}: no {METADATA_KEY.decode()!r} Parquet metadata (schema version, kinds, "
            "value names); not a trace written by xen970's recorder"
        )
    raw = json.loads(stored)
    kinds = TraceMetadata.from_dict(raw).kinds
    df = table.to_pandas(types_mapper=_int_or_string)
    df["t_ns"] = df["t_ns"].astype("int64")
    for name in _SMALL_INTS:
        df[name] = df[name].astype("int16")
    df["kind"] = df["kind"].cat.set_categories(list(kinds))
    df.attrs[TRACE_ATTR] = raw
    return df


def load_run(directory: str | Path) -> Run:
    """Load `trace.parquet` and `run.json` from a run directory."""
    d = Path(directory)
    for name in (TRACE_FILE, RUN_FILE):
        if not (d / name).is_file():
            raise FileNotFoundError(f"{d}: not a run directory (no {name})")
    meta = json.loads((d / RUN_FILE).read_text(encoding="utf-8"))
    return Run(trace=read_trace(d / TRACE_FILE), meta=meta)
