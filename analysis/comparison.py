"""Two runs side by side: per-domain metrics of each over a window, and their differences.

Domains are matched by *name* (run.json's `domains`), never by id: the same scenario can
give a domain another id in another run (a guest created later, a different dom0 setup).
A domain found in only one run gets NaN for the other.

>>> import analysis
>>> two = analysis.load_run("runs/two-cpus")  # the runs of docs/analysis.ipynb  # doctest: +SKIP
>>> one = analysis.load_run("runs/one-cpu")                             # doctest: +SKIP
>>> table = analysis.compare(two, one, labels=("2 cpus", "1 cpu"))     # doctest: +SKIP
>>> table.xs("cpu_share", level="metric")                              # doctest: +SKIP
            2 cpus     1 cpu      diff  rel_diff
domain
Domain-0  0.001599  0.001473 -0.000125 -0.078411
guest1    0.999320  0.987462 -0.011858 -0.011867
guest2    0.005537  0.005537  0.000000  0.000000
guest3    0.005611  0.005527 -0.000084 -0.014894
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

import numpy as np
import pandas as pd

import analysis.accessor  # noqa: F401  (registers DataFrame.xen)
from analysis.latency import (
    event_round_trip,
    io_latency,
    timer_lateness,
    upcall_latency,
    wake_to_run,
)
from analysis.runstate import cpu_share, runstate_shares
from analysis.throughput import io_transfers
from analysis.window import domain_names, in_window, resolve_window

if TYPE_CHECKING:
    from analysis.run import Run

__all__ = ["DOMAIN_METRICS", "compare", "domain_metrics"]

_NS_PER_US: Final = 1e3
LatencyFn = Callable[["Run", int | None, int | None], pd.DataFrame]
#: Per-domain latency medians in `domain_metrics`: column -> sample function.
_MEDIANS: Final[dict[str, LatencyFn]] = {
    "wake_p50_us": wake_to_run,
    "upcall_p50_us": upcall_latency,
    "event_rtt_p50_us": event_round_trip,
    "timer_late_p50_us": timer_lateness,
    "io_lat_p50_us": io_latency,
}
#: The columns of `domain_metrics`, in order.
DOMAIN_METRICS: Final = (
    "cpu_share",
    "running",
    "runnable",
    "blocked",
    "hcalls",
    "events_sent",
    *_MEDIANS,
    "io_mb_s",
)


def _count_by_domain(run: Run, kind: str, start: int, end: int) -> pd.Series:
    rows = run.trace.xen.kind(kind)
    rows = rows[in_window(rows["t_ns"], resolve_window(run, start, end))]
    return pd.Series(1, index=domain_names(run, rows["dom"])).groupby(level=0).sum()


def domain_metrics(run: Run, start: int | None = None, end: int | None = None) -> pd.DataFrame:
    """One row per domain (index: name), columns `DOMAIN_METRICS`, over `[start, end)`:
    CPU share (of one CPU, summed over VCPUs), runstate shares, hypercalls and events
    sent, median latencies (µs) of wake-to-run, upcall, event round trip, timer tick
    lateness and I/O, and I/O MB/s (block completed plus network received).

    >>> domain_metrics(run, 0, 1_000_000_000)[["cpu_share", "wake_p50_us"]]  # doctest: +SKIP
    """
    window = resolve_window(run, start, end)
    lo, hi = window.start, window.end
    shares = runstate_shares(run, lo, hi, by="domain")
    columns: dict[str, pd.Series] = {
        "cpu_share": cpu_share(run, lo, hi, by="domain"),
        **{state: shares[state] for state in ("running", "runnable", "blocked")},
        "hcalls": _count_by_domain(run, "hcall.enter", lo, hi),
        "events_sent": _count_by_domain(run, "evtchn.send", lo, hi),
    }
    for name, samples in _MEDIANS.items():
        lat = samples(run, lo, hi)
        columns[name] = lat.groupby("domain")["latency_ns"].median() / _NS_PER_US
    moved = io_transfers(run, lo, hi).groupby("domain")["bytes"].sum()
    columns["io_mb_s"] = moved / (window.ns / 1e9) / 1e6
    names = list(dict.fromkeys(run.domains.values()))
    out = pd.DataFrame(columns).reindex(columns=list(DOMAIN_METRICS))
    out = out.reindex(names + [n for n in out.index if n not in names])
    for counted in (
        "cpu_share",
        "running",
        "runnable",
        "blocked",
        "hcalls",
        "events_sent",
        "io_mb_s",
    ):
        out[counted] = out[counted].fillna(0.0)
    out.index.name = "domain"
    return out.astype("float64")


def compare(
    run_a: Run,
    run_b: Run,
    start: int | None = None,
    end: int | None = None,
    labels: Sequence[str] = ("a", "b"),
) -> pd.DataFrame:
    """`domain_metrics` of both runs side by side, domains matched by name.

    Index (domain, metric); columns the two `labels`, `diff` (b - a) and `rel_diff`
    (diff / a; NaN where a is 0 or missing). `end=None` is each run's own end, so two
    runs of different lengths compare their whole runs.

    >>> compare(a, b, labels=("1 cpu", "2 cpus")).xs("cpu_share", level="metric")  # doctest: +SKIP
    """
    if len(labels) != 2 or labels[0] == labels[1] or {"diff", "rel_diff"} & set(labels):
        raise ValueError(f"labels must be two distinct names other than diff, rel_diff: {labels}")
    first, second = labels
    side_a = domain_metrics(run_a, start, end).stack(future_stack=True)
    side_b = domain_metrics(run_b, start, end).stack(future_stack=True)
    domains = list(
        dict.fromkeys([*side_a.index.get_level_values(0), *side_b.index.get_level_values(0)])
    )
    index = pd.MultiIndex.from_product([domains, list(DOMAIN_METRICS)], names=["domain", "metric"])
    out = pd.DataFrame({first: side_a.reindex(index), second: side_b.reindex(index)})
    out["diff"] = out[second] - out[first]
    base = out[first].where(out[first] != 0, np.nan)
    out["rel_diff"] = out["diff"] / base
    return out
