"""Latencies as samples over a time window: event round trips per channel, wake-to-run,
upcall, timer tick lateness and I/O; their percentiles by group and per time bin.

Each sample function returns one row per measured latency with the time it started
(`t_ns`), the domain (`dom` id and `domain` name), what it belongs to (VCPU, channel or
device) and `latency_ns`; a sample counts in the window `[start, end)` when it *starts*
there. Matching is per key and forward in time (`pandas.merge_asof`), never a Python loop
over records. `latency_stats` and `latency_series` summarise any of them.

>>> import analysis
>>> run = analysis.load_run("runs/quickstart")                          # doctest: +SKIP
>>> rtt = event_round_trip(run, end=100_000_000)                        # doctest: +SKIP
>>> latency_stats(rtt, by=["domain", "port"]).loc["guest2"]             # doctest: +SKIP
      count  mean_us  p50_us  p90_us  p99_us
port
1         1   14.091  14.091  14.091  14.091
2         2   12.512  12.512  13.210  13.367
3      1000    5.856   5.845   5.846   5.846
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

import numpy as np
import pandas as pd

import analysis.accessor  # noqa: F401  (registers DataFrame.xen)
from analysis.runstate import runstate_names
from analysis.window import DEFAULT_BIN_NS, bin_edges, domain_names, in_window, resolve_window

if TYPE_CHECKING:
    from analysis.run import Run

__all__ = [
    "LATENCIES",
    "event_round_trip",
    "io_latency",
    "latency_series",
    "latency_stats",
    "timer_lateness",
    "upcall_latency",
    "wake_to_run",
]

_NS_PER_US: Final = 1e3
_CHANNEL: Final = ["dom", "port", "remote_dom", "remote_port"]
#: The guest.mark label a timer workload emits per tick, its value the tick's due time.
TIMER_TICK_MARK: Final = "timer.tick"


def _samples(
    run: Run,
    frame: pd.DataFrame,
    keys: Sequence[str],
    window_start: int | None,
    window_end: int | None,
) -> pd.DataFrame:
    """(t_ns, dom, domain, *keys, latency_ns) rows of `frame` starting in the window."""
    window = resolve_window(run, window_start, window_end)
    frame = frame[in_window(frame["t_ns"], window)]
    out = pd.DataFrame(
        {
            "t_ns": frame["t_ns"].to_numpy(dtype="int64"),
            "dom": frame["dom"].to_numpy(dtype="int64"),
            "domain": domain_names(run, frame["dom"]),
        }
    )
    for key in keys:
        values = frame[key]
        numeric = pd.api.types.is_numeric_dtype(values.dtype)
        out[key] = values.to_numpy(dtype="int64" if numeric else object)
    out["latency_ns"] = frame["latency_ns"].to_numpy(dtype="int64")
    return out


def _next_after(
    starts: pd.DataFrame, ends: pd.DataFrame, by: list[str], *, exact: bool = True
) -> pd.Series:
    """For each row of `starts`, the t_ns of the first row of `ends` with the same `by`
    keys at or after it (strictly after unless `exact`); NaN when there is none."""
    left = starts[["t_ns", *by]].astype("int64").reset_index(drop=True)
    left["_row"] = np.arange(len(left))
    right = ends[["t_ns", *by]].astype("int64").rename(columns={"t_ns": "t_next"})
    right = right.sort_values("t_next", kind="stable")
    right["t_ns"] = right["t_next"]
    matched = pd.merge_asof(
        left.sort_values("t_ns", kind="stable"),
        right,
        on="t_ns",
        by=by,
        direction="forward",
        allow_exact_matches=exact,
    )
    return matched.set_index("_row")["t_next"].sort_index()


def wake_to_run(run: Run, start: int | None = None, end: int | None = None) -> pd.DataFrame:
    """ns from each `sched.wake` of a VCPU to its next entry into `running`.

    Several wakes before one run each get their own latency to it; a wake never followed
    by a run is left out. Columns t_ns (the wake), dom, domain, vcpu, latency_ns.

    >>> wake_to_run(run).groupby("domain")["latency_ns"].median()       # doctest: +SKIP
    """
    wakes = run.trace.xen.kind("sched.wake")
    rs = run.trace.xen.kind("sched.runstate")
    running = rs[runstate_names(run, rs["state"]) == "running"]
    t_run = _next_after(wakes, running, ["dom", "vcpu"]).to_numpy()
    found = ~np.isnan(t_run)
    picked = wakes[found].assign(latency_ns=t_run[found] - wakes["t_ns"].to_numpy()[found])
    return _samples(run, picked, ["vcpu"], start, end)


def upcall_latency(run: Run, start: int | None = None, end: int | None = None) -> pd.DataFrame:
    """ns from each `evtchn.pending` (the VCPU Xen notified) to that VCPU's next 0x500
    upcall. Columns t_ns (the pending), dom, domain, vcpu, port, latency_ns.

    >>> upcall_latency(run, end=1_000_000_000)["latency_ns"].quantile(0.99)  # doctest: +SKIP
    """
    pending = run.trace.xen.kind("evtchn.pending")
    upcalls = run.trace.xen.kind("evtchn.upcall")
    t_up = _next_after(pending, upcalls, ["dom", "vcpu"]).to_numpy()
    found = ~np.isnan(t_up)
    picked = pending[found].assign(latency_ns=t_up[found] - pending["t_ns"].to_numpy()[found])
    return _samples(run, picked, ["vcpu", "port"], start, end)


def event_round_trip(run: Run, start: int | None = None, end: int | None = None) -> pd.DataFrame:
    """Event round trips per interdomain channel, from the side that sent first.

    A round trip starts with an `evtchn.send` by domain A on its port (bound to B's
    port), is answered by B's next send on that channel back to A, and ends when A's
    guest handles the event on its port (`evtchn.handled`). Sends by A before B answers
    belong to the first one. Both ends measure: in a ping-pong each round trip of one
    side starts the other's. Columns t_ns (A's send), dom, domain (A), port,
    remote_dom, remote_domain, remote_port, latency_ns.

    >>> rtt = event_round_trip(run, 0, 500_000_000)                     # doctest: +SKIP
    >>> rtt.groupby(["domain", "port"])["latency_ns"].median()          # doctest: +SKIP
    """
    sends = run.trace.xen.kind("evtchn.send")
    handled = run.trace.xen.kind("evtchn.handled")
    requests = sends[sends["remote_dom"] >= 0]
    # B's send seen from A's side of the channel: swap the ends.
    swap = {"dom": "remote_dom", "port": "remote_port", "remote_dom": "dom", "remote_port": "port"}
    replies = requests[["t_ns", *_CHANNEL]].rename(columns=swap)
    t_reply = _next_after(requests, replies, _CHANNEL, exact=False).to_numpy()
    answered = requests.assign(t_reply=t_reply)[~np.isnan(t_reply)]
    answered = answered.drop_duplicates([*_CHANNEL, "t_reply"], keep="first")
    done = answered[["dom", "port"]].assign(t_ns=answered["t_reply"].astype("int64"))
    t_done = _next_after(done, handled, ["dom", "port"]).to_numpy()
    found = ~np.isnan(t_done)
    picked = answered[found].assign(latency_ns=t_done[found] - answered["t_ns"].to_numpy()[found])
    out = _samples(run, picked, ["port", "remote_dom", "remote_port"], start, end)
    out.insert(
        out.columns.get_loc("remote_port"), "remote_domain", domain_names(run, out["remote_dom"])
    )
    return out


def timer_lateness(run: Run, start: int | None = None, end: int | None = None) -> pd.DataFrame:
    """ns each guest timer tick came after it was due (the timer workload's `timer.tick`
    marks carry the due time). Columns t_ns (the due time), dom, domain, vcpu, latency_ns.

    >>> latency_stats(timer_lateness(run), by=["domain", "vcpu"])       # doctest: +SKIP
    """
    marks = run.trace.xen.kind("guest.mark")
    ticks = marks[(marks["text"] == TIMER_TICK_MARK).to_numpy(dtype=bool, na_value=False)]
    due = ticks["value"].to_numpy(dtype="int64")
    late = ticks.assign(t_ns=due, latency_ns=ticks["t_ns"].to_numpy(dtype="int64") - due)
    return _samples(run, late.sort_values("t_ns", kind="stable"), ["vcpu"], start, end)


def io_latency(run: Run, start: int | None = None, end: int | None = None) -> pd.DataFrame:
    """Block request latency (submit to completion, by blkfront) and network receive
    latency (send to receipt, by the receiving netfront), one row per completion.
    Columns t_ns (the request's start), dom, domain, io ("block" or "net"), dev,
    latency_ns; rows in time order.

    >>> lat = io_latency(run)                                           # doctest: +SKIP
    >>> latency_series(run, lat[lat["io"] == "block"], bin_ns=50_000_000)  # doctest: +SKIP
    """
    parts = []
    for io, kind in (("block", "blk.complete"), ("net", "net.rx")):
        rows = run.trace.xen.kind(kind)
        started = rows["t_ns"].to_numpy(dtype="int64") - rows["latency_ns"].to_numpy(dtype="int64")
        parts.append(rows[["dom", "dev", "latency_ns"]].assign(t_ns=started, io=io))
    rows = pd.concat(parts, ignore_index=True).sort_values("t_ns", kind="stable")
    return _samples(run, rows, ["io", "dev"], start, end)


#: Every latency sample function, by the name plots and comparisons use.
LATENCIES: Final = {
    "wake_to_run": wake_to_run,
    "upcall": upcall_latency,
    "event_rtt": event_round_trip,
    "timer_lateness": timer_lateness,
    "io": io_latency,
}


def _check_by(samples: pd.DataFrame, by: str | Sequence[str] | None) -> list[str]:
    keys = [] if by is None else [by] if isinstance(by, str) else list(by)
    missing = [k for k in keys if k not in samples.columns]
    if missing:
        raise ValueError(f"samples have no column {missing}; they have {list(samples.columns)}")
    return keys


def _stat_columns(percentiles: Sequence[float]) -> list[str]:
    return ["count", "mean_us", *(f"p{p:g}_us" for p in percentiles)]


def _stats(lat: np.ndarray, percentiles: Sequence[float]) -> list[float]:
    """count, mean and percentiles in µs of one group's latencies (NaN when empty)."""
    values = np.asarray(lat, dtype="float64")
    if values.size == 0:
        return [0.0] + [np.nan] * (1 + len(percentiles))
    qs = np.percentile(values, list(percentiles)) / _NS_PER_US
    return [float(values.size), values.mean() / _NS_PER_US, *map(float, qs)]


def _grouped_stats(
    samples: pd.DataFrame, keys: list[str], percentiles: Sequence[float]
) -> pd.DataFrame:
    """`_stats` per group of `keys` (in key order), or one row "all" without keys."""
    columns = _stat_columns(percentiles)
    if not keys:
        rows = [_stats(samples["latency_ns"].to_numpy(), percentiles)]
        out = pd.DataFrame(rows, index=pd.Index(["all"]), columns=columns)
    else:
        groups = samples.groupby(keys, sort=True)["latency_ns"]
        index = [k for k, _ in groups]
        rows = [_stats(g.to_numpy(), percentiles) for _, g in groups]
        if len(keys) == 1:
            idx = pd.Index([k[0] if isinstance(k, tuple) else k for k in index], name=keys[0])
        else:
            idx = pd.MultiIndex.from_tuples(index, names=keys)
        out = pd.DataFrame(rows, index=idx, columns=columns)
    return out.astype({"count": "int64"})


def latency_stats(
    samples: pd.DataFrame,
    by: str | Sequence[str] | None = "domain",
    percentiles: Sequence[float] = (50, 90, 99),
) -> pd.DataFrame:
    """count, mean and percentiles (µs, numpy's linear interpolation) of `latency_ns`,
    one row per group of `by` (any sample columns: domain, dom, vcpu, port, dev...);
    `by=None` gives one row for all samples.

    >>> latency_stats(wake_to_run(run), by=["domain", "vcpu"])          # doctest: +SKIP
    """
    return _grouped_stats(samples, _check_by(samples, by), percentiles)


def latency_series(
    run: Run,
    samples: pd.DataFrame,
    bin_ns: int = DEFAULT_BIN_NS,
    start: int | None = None,
    end: int | None = None,
    by: str | Sequence[str] | None = None,
    percentiles: Sequence[float] = (50, 99),
) -> pd.DataFrame:
    """`latency_stats` per time bin of `bin_ns` (by the samples' start times): one row per
    bin (and group of `by`), index `t_ns` = the bin's start; bins without samples have
    count 0 and NaN percentiles.

    >>> latency_series(run, wake_to_run(run), bin_ns=100_000_000)       # doctest: +SKIP
               count  mean_us  p50_us  p99_us
    t_ns
    0           2011    0.343   0.304   0.305
    100000000      0      NaN     NaN     NaN
    """
    window = resolve_window(run, start, end)
    keys = _check_by(samples, by)
    edges = bin_edges(window, bin_ns)
    inside = samples[in_window(samples["t_ns"], window)]
    bins = edges[(inside["t_ns"].to_numpy(dtype="int64") - window.start) // bin_ns]
    table = _grouped_stats(inside.assign(t_ns=bins), ["t_ns", *keys], percentiles)
    if keys:
        return table
    empty = pd.DataFrame([_stats(np.array([]), percentiles)], columns=table.columns)
    table = table.reindex(pd.Index(edges, name="t_ns"))
    missing = table["count"].isna()
    table.loc[missing] = empty.to_numpy().repeat(int(missing.sum()), axis=0)
    return table.astype({"count": "int64"})
