"""Reading xen970 run directories into pandas: traces, metrics and summaries.

Analysis only reads files (`trace.parquet`, `run.json`), so it works on runs made
elsewhere; importing this package registers the `DataFrame.xen` accessor.

Windowed metrics take `start`/`end` (simulated ns) and group by domain name, id or VCPU
(`analysis.window`); `run.plot` draws them (`analysis.plot`); `compare` puts two runs side
by side; `xen970 report` writes them all into one HTML page (`analysis.report_html`).
`xm_list`, `xm_vcpu_list` and `xm_info` give xm's views at any simulated time of a run
(`analysis.xm`).
"""

from analysis.accessor import XenAccessor
from analysis.comparison import compare, domain_metrics
from analysis.io import block_stats, grant_balance, net_books, net_stats, tce_balance
from analysis.latency import (
    event_round_trip,
    io_latency,
    latency_series,
    latency_stats,
    timer_lateness,
    upcall_latency,
    wake_to_run,
)
from analysis.run import Run, load_run, read_kind, read_trace
from analysis.runstate import (
    cpu_share,
    cpu_share_series,
    cpu_time,
    runstate_intervals,
    runstate_series,
    runstate_shares,
    runstate_time,
)
from analysis.summary import stalled_workloads, summarize
from analysis.sweep import load_sweep, load_sweep_summary
from analysis.throughput import io_throughput_series, io_transfers
from analysis.trace_metadata import TraceMetadata, TraceMetadataError
from analysis.xm import XmViewError, recorded_xm_views, xm_info, xm_list, xm_vcpu_list

__all__ = [
    "Run",
    "TraceMetadata",
    "TraceMetadataError",
    "XenAccessor",
    "XmViewError",
    "block_stats",
    "compare",
    "cpu_share",
    "cpu_share_series",
    "cpu_time",
    "domain_metrics",
    "event_round_trip",
    "grant_balance",
    "io_latency",
    "io_throughput_series",
    "io_transfers",
    "latency_series",
    "latency_stats",
    "load_run",
    "load_sweep",
    "load_sweep_summary",
    "net_books",
    "net_stats",
    "read_kind",
    "read_trace",
    "recorded_xm_views",
    "runstate_intervals",
    "runstate_series",
    "runstate_shares",
    "runstate_time",
    "stalled_workloads",
    "summarize",
    "tce_balance",
    "timer_lateness",
    "upcall_latency",
    "wake_to_run",
    "xm_info",
    "xm_list",
    "xm_vcpu_list",
]
