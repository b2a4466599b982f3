"""Plots of a run, each one call returning a matplotlib `Figure` (Agg canvas, no display,
no pyplot state): `run.plot.gantt(start=..., end=...)`, `run.plot.cpu_share()`,
`run.plot.latency_cdf()`, `run.plot.io_throughput()`, `run.plot.runstate()`.

A domain has the same colour in every plot of a run, and in another run with the same
domain names: its colour comes from a hash of its name (`domain_colours`). Times are in
simulated milliseconds; windows and grouping are the metrics' (`analysis.window`).

>>> import analysis
>>> run = analysis.load_run("runs/quickstart")                          # doctest: +SKIP
>>> fig = run.plot.gantt(start=0, end=5_000_000)                        # doctest: +SKIP
>>> fig.savefig("gantt.png")                                            # doctest: +SKIP
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Final

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

import analysis.accessor  # noqa: F401  (registers DataFrame.xen)
from analysis.latency import LATENCIES
from analysis.runstate import cpu_share_series, runstate_shares
from analysis.throughput import io_throughput_series
from analysis.window import DEFAULT_BIN_NS, By, domain_names, group_keys, resolve_window

if TYPE_CHECKING:
    from analysis.run import Run

__all__ = [
    "RUNSTATE_COLOURS",
    "RunPlots",
    "cpu_share",
    "domain_colours",
    "gantt",
    "io_throughput",
    "latency_cdf",
    "runstate",
    "vcpu_intervals",
]

_NS_PER_MS: Final = 1e6
_NS_PER_US: Final = 1e3
_TIME_LABEL: Final = "simulated time (ms)"
_PALETTE: Final = [tuple(c) for c in colormaps["tab20"].colors]
#: Fixed colours of the runstates, in the trace's order of them.
RUNSTATE_COLOURS: Final = {
    "running": "#2ca02c",
    "runnable": "#ff7f0e",
    "blocked": "#9e9e9e",
    "offline": "#d62728",
}
#: Bars narrower than this share of the window get no VCPU label in the Gantt chart.
_LABEL_MIN_SHARE: Final = 0.04
#: Most points a CDF line draws (a 1/1000 step is below a pixel at any figure size here).
_CDF_POINTS: Final = 1000


def domain_colours(names: Iterable[str]) -> dict[str, tuple[float, ...]]:
    """A colour per domain name: the palette slot of the name's CRC-32, moved to the next
    free slot when two names of this set collide (names taken in sorted order).

    >>> [round(c, 2) for c in domain_colours(["guest1", "Domain-0"])["guest1"]]
    [0.09, 0.75, 0.81]
    """
    colours: dict[str, tuple[float, ...]] = {}
    used: set[int] = set()
    for name in sorted(set(names)):
        slot = zlib.crc32(name.encode()) % len(_PALETTE)
        while slot in used and len(used) < len(_PALETTE):
            slot = (slot + 1) % len(_PALETTE)
        used.add(slot)
        colours[name] = _PALETTE[slot]
    return colours


def _figure(width: float = 9.0, height: float = 4.0, *, subplots: int = 1) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    fig.subplots(1, subplots, squeeze=False)
    return fig


def _group_label(key: object, keys: Sequence[str]) -> str:
    """ "guest1", "3", "guest1 v0", "3 v1": a group's name in a legend."""
    parts = key if isinstance(key, tuple) else (key,)
    return " ".join(f"v{p}" if k == "vcpu" else str(p) for k, p in zip(keys, parts, strict=True))


def _step(ax: Axes, edges: np.ndarray, values: np.ndarray, end_ns: int, **style: object) -> None:
    """A step line over bins starting at `edges` (ns), the last one drawn to `end_ns`."""
    x = np.append(edges, end_ns) / _NS_PER_MS
    y = np.append(values, values[-1:]) if len(values) else values
    ax.step(x if len(values) else x[:0], y, where="post", **style)


def _run_colours(run: Run) -> dict[str, tuple[float, ...]]:
    return domain_colours(run.domains.values())


def vcpu_intervals(run: Run, start: int | None = None, end: int | None = None) -> pd.DataFrame:
    """Which VCPU occupied each physical CPU when, from `sched.switch` records (idle left
    out), clipped to `[start, end)`: columns cpu, dom, domain, vcpu, begin_ns, end_ns.

    >>> vcpu_intervals(run, 0, 1_000_000)                               # doctest: +SKIP
    """
    window = resolve_window(run, start, end)
    sw = run.trace.xen.kind("sched.switch")
    t = sw["t_ns"].to_numpy(dtype="int64")
    stop = sw.groupby("cpu", sort=False)["t_ns"].shift(-1).fillna(run.sim_ns)
    stop = stop.to_numpy(dtype="int64")
    keep = (sw["dom"].to_numpy() >= 0) & (stop > window.start) & (t < window.end) & (stop > t)
    sw = sw[keep]
    return pd.DataFrame(
        {
            "cpu": sw["cpu"].to_numpy(dtype="int64"),
            "dom": sw["dom"].to_numpy(dtype="int64"),
            "domain": domain_names(run, sw["dom"]),
            "vcpu": sw["vcpu"].to_numpy(dtype="int64"),
            "begin_ns": np.maximum(t[keep], window.start),
            "end_ns": np.minimum(stop[keep], window.end),
        }
    )


def gantt(run: Run, start: int | None = None, end: int | None = None) -> Figure:
    """Which VCPU ran on which physical CPU over `[start, end)`: one row per CPU, one bar
    per run interval coloured by domain (one bar collection per CPU and domain), labelled
    `v<N>` where wide enough; idle time is blank.

    >>> run.plot.gantt(start=100_000_000, end=102_000_000)              # doctest: +SKIP
    """
    window = resolve_window(run, start, end)
    iv = vcpu_intervals(run, window.start, window.end)
    colours = _run_colours(run)
    cpus = sorted(set(range(int(run.trace["cpu"].max()) + 1)) | set(iv["cpu"]))
    fig = _figure(height=1.2 + 0.6 * len(cpus))
    ax: Axes = fig.axes[0]
    for (cpu, domain), rows in iv.groupby(["cpu", "domain"], sort=True):
        begin = rows["begin_ns"].to_numpy() / _NS_PER_MS
        width = (rows["end_ns"] - rows["begin_ns"]).to_numpy() / _NS_PER_MS
        ax.broken_barh(
            list(zip(begin, width, strict=True)),
            (cpu - 0.4, 0.8),
            facecolors=colours.get(str(domain), "black"),
            label=str(domain),
        )
        wide = width >= _LABEL_MIN_SHARE * window.ns / _NS_PER_MS
        for b, w, v in zip(begin[wide], width[wide], rows["vcpu"].to_numpy()[wide], strict=True):
            ax.text(b + w / 2, cpu, f"v{v}", ha="center", va="center", fontsize=7)
    ax.set_yticks(cpus, [f"cpu{c}" for c in cpus])
    ax.set_ylim(len(cpus) - 0.5, -0.5)
    ax.set_xlim(window.start / _NS_PER_MS, window.end / _NS_PER_MS)
    ax.set_xlabel(_TIME_LABEL)
    ax.set_title("VCPUs on physical CPUs")
    present = set(iv["domain"])
    shown = [d for d in dict.fromkeys([*run.domains.values(), *sorted(present)]) if d in present]
    handles = [Patch(facecolor=colours.get(d, "black"), label=d) for d in shown]
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return fig


def cpu_share(
    run: Run,
    bin_ns: int = DEFAULT_BIN_NS,
    start: int | None = None,
    end: int | None = None,
    by: By = "domain",
) -> Figure:
    """CPU share per bin, one step line per group (`runstate.cpu_share_series`).

    >>> run.plot.cpu_share(bin_ns=10_000_000, by="vcpu")                # doctest: +SKIP
    """
    keys = group_keys(by)
    window = resolve_window(run, start, end)
    series = cpu_share_series(run, bin_ns, window.start, window.end, by)
    colours = _run_colours(run)
    fig = _figure()
    ax: Axes = fig.axes[0]
    edges = series.index.to_numpy()
    for key in series.columns:
        name = key[0] if isinstance(key, tuple) else key
        colour = colours.get(str(name)) if keys[0] == "domain" else None
        label = _group_label(key, keys)
        _step(ax, edges, series[key].to_numpy(), window.end, label=label, color=colour)
    ax.set_xlabel(_TIME_LABEL)
    ax.set_ylabel(f"CPU share per {bin_ns / _NS_PER_MS:g} ms bin")
    ax.set_ylim(bottom=0)
    ax.set_title("CPU share over time")
    if len(series.columns):
        ax.legend(fontsize=8)
    return fig


def latency_cdf(
    run: Run,
    metrics: Sequence[str] | None = None,
    start: int | None = None,
    end: int | None = None,
) -> Figure:
    """Empirical CDFs of latencies (µs), one panel per metric of `latency.LATENCIES`
    (default: every one with samples), one step line per domain.

    >>> run.plot.latency_cdf(["wake_to_run", "event_rtt"])              # doctest: +SKIP
    """
    names = list(LATENCIES) if metrics is None else list(metrics)
    unknown = [m for m in names if m not in LATENCIES]
    if unknown:
        raise ValueError(f"no latency {unknown}: choose from {', '.join(LATENCIES)}")
    samples = {m: LATENCIES[m](run, start, end) for m in names}
    if metrics is None:
        samples = {m: s for m, s in samples.items() if len(s)}
    colours = _run_colours(run)
    fig = _figure(width=4.0 * max(len(samples), 1), height=3.6, subplots=max(len(samples), 1))
    for ax, (metric, lat) in zip(fig.axes, samples.items(), strict=False):
        for domain, rows in lat.groupby("domain", sort=True):
            values = np.sort(rows["latency_ns"].to_numpy()) / _NS_PER_US
            frac = np.arange(1, len(values) + 1) / len(values)
            # Beyond _CDF_POINTS samples, every k-th step (and the last) draws the same curve.
            keep = np.unique(np.linspace(0, len(values) - 1, _CDF_POINTS).astype("int64"))
            values, frac = values[keep], frac[keep]
            ax.step(values, frac, where="post", label=str(domain), color=colours.get(domain))
        ax.set_title(metric.replace("_", " "))
        ax.set_xlabel("latency (µs)")
        ax.set_ylabel("fraction of samples")
        ax.set_ylim(0, 1.02)
        if ax.lines:
            ax.legend(fontsize=8)
    return fig


def io_throughput(
    run: Run, bin_ns: int = DEFAULT_BIN_NS, start: int | None = None, end: int | None = None
) -> Figure:
    """MB/s per bin, one step line per device: block (completed okay) and network
    (received), labelled `<domain> <io> <dev>` (`throughput.io_throughput_series`).

    >>> run.plot.io_throughput(bin_ns=20_000_000)                       # doctest: +SKIP
    """
    window = resolve_window(run, start, end)
    series = io_throughput_series(run, bin_ns, window.start, window.end)
    colours = _run_colours(run)
    fig = _figure()
    ax: Axes = fig.axes[0]
    devices = series.index.droplevel("t_ns").unique()
    for domain, io, dev in devices:
        rows = series.xs((domain, io, dev), level=("domain", "io", "dev"))
        _step(
            ax,
            rows.index.to_numpy(),
            rows["mb_s"].to_numpy(),
            window.end,
            linestyle="-" if io == "block" else "--",
            color=colours.get(domain),
            label=f"{domain} {io} {dev}",
        )
    ax.set_xlabel(_TIME_LABEL)
    ax.set_ylabel(f"MB/s per {bin_ns / _NS_PER_MS:g} ms bin")
    ax.set_ylim(bottom=0)
    ax.set_title("I/O throughput over time")
    if ax.lines:
        ax.legend(fontsize=8)
    return fig


def runstate(
    run: Run, start: int | None = None, end: int | None = None, by: By = "domain"
) -> Figure:
    """Runstate breakdown: one horizontal bar per group, stacked by runstate share (one
    segment per runstate, zero-width where none), runstates in fixed colours.

    >>> run.plot.runstate(by="vcpu")                                    # doctest: +SKIP
    """
    keys = group_keys(by)
    shares = runstate_shares(run, start, end, by)
    fig = _figure(height=1.2 + 0.45 * max(len(shares), 1))
    ax: Axes = fig.axes[0]
    y = np.arange(len(shares))
    left = np.zeros(len(shares))
    for state in shares.columns:
        width = shares[state].to_numpy()
        ax.barh(y, width, left=left, color=RUNSTATE_COLOURS.get(state, "black"), label=state)
        left = left + width
    ax.set_yticks(y, [_group_label(k, keys) for k in shares.index])
    ax.set_ylim(len(shares) - 0.5, -0.5)
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of tracked time")
    ax.set_title("runstate breakdown")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


class RunPlots:
    """`run.plot`: the plots of this module bound to one run (each returns a Figure)."""

    def __init__(self, run: Run) -> None:
        self._run = run

    def gantt(self, start: int | None = None, end: int | None = None) -> Figure:
        """`plot.gantt` of this run."""
        return gantt(self._run, start, end)

    def cpu_share(
        self,
        bin_ns: int = DEFAULT_BIN_NS,
        start: int | None = None,
        end: int | None = None,
        by: By = "domain",
    ) -> Figure:
        """`plot.cpu_share` of this run."""
        return cpu_share(self._run, bin_ns, start, end, by)

    def latency_cdf(
        self,
        metrics: Sequence[str] | None = None,
        start: int | None = None,
        end: int | None = None,
    ) -> Figure:
        """`plot.latency_cdf` of this run."""
        return latency_cdf(self._run, metrics, start, end)

    def io_throughput(
        self, bin_ns: int = DEFAULT_BIN_NS, start: int | None = None, end: int | None = None
    ) -> Figure:
        """`plot.io_throughput` of this run."""
        return io_throughput(self._run, bin_ns, start, end)

    def runstate(
        self, start: int | None = None, end: int | None = None, by: By = "domain"
    ) -> Figure:
        """`plot.runstate` of this run."""
        return runstate(self._run, start, end, by)
