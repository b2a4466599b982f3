"""Reading xen970 run directories into pandas: traces, metrics and summaries.

Analysis only reads files (`trace.parquet`, `run.json`), so it works on runs made
elsewhere; importing this package registers the `DataFrame.xen` accessor.
"""

from analysis.accessor import XenAccessor
from analysis.io import block_stats, grant_balance, net_books, net_stats, tce_balance
from analysis.run import Run, load_run, read_kind, read_trace
from analysis.summary import stalled_workloads, summarize
from analysis.sweep import load_sweep, load_sweep_summary
from analysis.trace_metadata import TraceMetadata, TraceMetadataError

__all__ = [
    "Run",
    "TraceMetadata",
    "TraceMetadataError",
    "XenAccessor",
    "block_stats",
    "grant_balance",
    "load_run",
    "load_sweep",
    "load_sweep_summary",
    "net_books",
    "net_stats",
    "read_kind",
    "read_trace",
    "stalled_workloads",
    "summarize",
    "tce_balance",
]
