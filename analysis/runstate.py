"""CPU time and runstate shares over a time window, by domain (name or id) or VCPU, and
their per-bin time series (e.g. CPU share per 100 ms).

A VCPU's runstate intervals run from each `sched.runstate` record to its next one (the
last to the run's end) and are clipped to the window. A VCPU is counted in a window when
one of its intervals overlaps it, so a VCPU blocked throughout shows a CPU share of 0.

>>> import analysis
>>> run = analysis.load_run("runs/quickstart")                          # doctest: +SKIP
>>> cpu_share(run, start=0, end=500_000_000, by="vcpu")                 # doctest: +SKIP
domain    vcpu
Domain-0  0       0.0016
          1       0.0000
guest1    0       0.9985
guest2    0       0.0064
guest3    0       0.0065
Name: cpu_share, dtype: float64
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

import analysis.accessor  # noqa: F401  (registers DataFrame.xen)
from analysis.window import (
    DEFAULT_BIN_NS,
    By,
    bin_edges,
    domain_names,
    group_keys,
    resolve_window,
    split_by_bins,
)

if TYPE_CHECKING:
    from analysis.run import Run

__all__ = [
    "INTERVAL_COLUMNS",
    "cpu_share",
    "cpu_share_series",
    "cpu_time",
    "runstate_intervals",
    "runstate_names",
    "runstate_series",
    "runstate_shares",
    "runstate_time",
]

INTERVAL_COLUMNS = ("dom", "domain", "vcpu", "state", "begin_ns", "end_ns", "ns")


def runstate_intervals(run: Run, start: int | None = None, end: int | None = None) -> pd.DataFrame:
    """Each VCPU's runstate intervals overlapping `[start, end)`, clipped to it.

    Columns `INTERVAL_COLUMNS`: `state` is the runstate's name (running, runnable,
    blocked, offline), `ns` = end_ns - begin_ns.

    >>> runstate_intervals(run, 0, 1_000_000).head(2)                   # doctest: +SKIP
       dom    domain  vcpu    state  begin_ns  end_ns      ns
    0    0  Domain-0     0  running         0  784050  784050
    1    0  Domain-0     1  running     11858   16475    4617
    """
    window = resolve_window(run, start, end)
    rs = run.trace.xen.kind("sched.runstate")
    t = rs["t_ns"].to_numpy(dtype="int64")
    nxt = rs.groupby(["dom", "vcpu"], sort=False)["t_ns"].shift(-1)
    stop = nxt.fillna(run.sim_ns).to_numpy(dtype="int64")
    keep = (stop > window.start) & (t < window.end) & (stop > t)
    rs = rs[keep]
    begin = np.maximum(t[keep], window.start)
    finish = np.minimum(stop[keep], window.end)
    out = pd.DataFrame(
        {
            "dom": rs["dom"].to_numpy(dtype="int64"),
            "domain": domain_names(run, rs["dom"]),
            "vcpu": rs["vcpu"].to_numpy(dtype="int64"),
            "state": runstate_names(run, rs["state"]),
            "begin_ns": begin,
            "end_ns": finish,
            "ns": finish - begin,
        },
        columns=list(INTERVAL_COLUMNS),
    )
    return out


def runstate_names(run: Run, state: pd.Series) -> np.ndarray:
    """The runstate names of a `state` column: codes named by the trace's own metadata,
    or the names themselves where the frame already carries them."""
    if not pd.api.types.is_numeric_dtype(state.dtype):
        return state.astype(str).to_numpy(dtype=object)
    names = np.array(_state_names(run), dtype=object)
    return names[state.to_numpy(dtype="int64")]


def _state_names(run: Run) -> list[str]:
    return list(run.trace.xen.metadata.names_of("state"))


def runstate_time(
    run: Run, start: int | None = None, end: int | None = None, by: By = "domain"
) -> pd.DataFrame:
    """ns spent in each runstate inside `[start, end)`, one row per group, one column per
    runstate (int64).

    >>> runstate_time(run, by=["dom", "vcpu"])                          # doctest: +SKIP
    state        running  runnable     blocked  offline
    dom vcpu
    0   0         802987      8152  1999188861        0
        1           4617         0  1999983525        0
    1   0     1999247947         0           0        0
    ...
    """
    keys = group_keys(by)
    iv = runstate_intervals(run, start, end)
    table = iv.pivot_table(index=keys, columns="state", values="ns", aggfunc="sum", fill_value=0)
    table = table.reindex(columns=_state_names(run), fill_value=0).astype("int64")
    table.columns.name = "state"
    return table


def runstate_shares(
    run: Run, start: int | None = None, end: int | None = None, by: By = "domain"
) -> pd.DataFrame:
    """Fraction of each group's tracked time inside `[start, end)` spent in each runstate
    (each row sums to 1).

    >>> runstate_shares(run, 0, 1_000_000_000)["runnable"]              # doctest: +SKIP
    """
    table = runstate_time(run, start, end, by)
    total = table.sum(axis=1).replace(0, np.nan)
    return table.div(total, axis=0).fillna(0.0).astype("float64")


def cpu_time(
    run: Run, start: int | None = None, end: int | None = None, by: By = "domain"
) -> pd.Series:
    """Running ns inside `[start, end)` per group.

    >>> cpu_time(run, end=100_000_000, by="dom")                        # doctest: +SKIP
    dom
    0      807604
    1    99247947
    2     3224837
    3     3229250
    Name: cpu_time_ns, dtype: int64
    """
    return runstate_time(run, start, end, by)["running"].rename("cpu_time_ns")


def cpu_share(
    run: Run, start: int | None = None, end: int | None = None, by: By = "domain"
) -> pd.Series:
    """Running time over the window's length, per group: one VCPU's share is the fraction
    of the window it ran; a domain's is the sum of its VCPUs' (2.0 = two CPUs' worth).

    >>> round(cpu_share(run, 0, 500_000_000, by="domain")["guest1"], 4)  # doctest: +SKIP
    0.9985
    """
    window = resolve_window(run, start, end)
    running = cpu_time(run, window.start, window.end, by)
    return (running.astype("float64") / window.ns).rename("cpu_share")


def runstate_series(
    run: Run,
    state: str = "running",
    bin_ns: int = DEFAULT_BIN_NS,
    start: int | None = None,
    end: int | None = None,
    by: By = "domain",
) -> pd.DataFrame:
    """Share of each bin's length each group spent in `state`, one row per bin (index
    `t_ns`, the bin's start), one column per group. A bin cut short by the window's end
    is divided by its own length.

    >>> runstate_series(run, "runnable", bin_ns=10_000_000, by="vcpu")  # doctest: +SKIP
    """
    window = resolve_window(run, start, end)
    keys = group_keys(by)
    if state not in _state_names(run):
        raise ValueError(f"no runstate {state!r}: the trace has {', '.join(_state_names(run))}")
    edges = bin_edges(window, bin_ns)
    iv = runstate_intervals(run, window.start, window.end)
    groups = iv[keys].drop_duplicates().sort_values(keys)
    iv = iv[iv["state"] == state]
    piece, lo, ns = split_by_bins(iv["begin_ns"], iv["end_ns"], window, bin_ns)
    pieces = iv.iloc[piece][keys].assign(t_ns=lo, ns=ns)
    table = pieces.pivot_table(index="t_ns", columns=keys, values="ns", aggfunc="sum")
    columns = pd.MultiIndex.from_frame(groups) if len(keys) > 1 else pd.Index(groups[keys[0]])
    table = table.reindex(index=pd.Index(edges, name="t_ns"), columns=columns, fill_value=0)
    width = np.minimum(edges + bin_ns, window.end) - edges
    return table.fillna(0).astype("float64").div(width, axis=0)


def cpu_share_series(
    run: Run,
    bin_ns: int = DEFAULT_BIN_NS,
    start: int | None = None,
    end: int | None = None,
    by: By = "domain",
) -> pd.DataFrame:
    """CPU share per bin (`runstate_series` of `running`): e.g. per 100 ms, per domain.

    >>> cpu_share_series(run, bin_ns=100_000_000)                       # doctest: +SKIP
    domain      Domain-0  guest1  guest2  guest3
    t_ns
    0             0.0081  0.9925  0.0322  0.0323
    100000000     0.0000  1.0000  0.0000  0.0000
    """
    return runstate_series(run, "running", bin_ns, start, end, by)
