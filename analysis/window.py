"""Time windows, grouping keys and time bins shared by the windowed metrics.

Every metric takes a window `[start, end)` in simulated ns (`start=None` is 0, `end=None`
the run's end, `sim_ns` in run.json) and groups by any of `dom` (domain id), `domain`
(domain name, from run.json: the key that matches domains across runs) and `vcpu`.
`by="vcpu"` alone means per VCPU of each domain, `("domain", "vcpu")`.

>>> import analysis
>>> run = analysis.load_run("runs/quickstart")            # doctest: +SKIP
>>> resolve_window(run, None, 5_000_000)                   # doctest: +SKIP
Window(start=0, end=5000000)
>>> group_keys("vcpu")
['domain', 'vcpu']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from analysis.run import Run

__all__ = [
    "GROUP_KEYS",
    "By",
    "Window",
    "bin_edges",
    "domain_names",
    "group_keys",
    "in_window",
    "resolve_window",
    "split_by_bins",
]

#: What a metric can group by.
GROUP_KEYS: Final = ("domain", "dom", "vcpu")
By = str | Sequence[str]
#: 100 ms: the default width of a time-series bin.
DEFAULT_BIN_NS: Final = 100_000_000


@dataclass(frozen=True)
class Window:
    """A half-open window `[start, end)` of simulated time, in ns."""

    start: int
    end: int

    @property
    def ns(self) -> int:
        """Its length in ns."""
        return self.end - self.start


def resolve_window(run: Run, start: int | None, end: int | None) -> Window:
    """The window `[start, end)`, defaulting to the whole run; ValueError if it is empty.

    >>> resolve_window(run, 1_000_000, None)                 # doctest: +SKIP
    Window(start=1000000, end=2000000000)
    """
    lo = 0 if start is None else int(start)
    hi = run.sim_ns if end is None else int(end)
    if lo < 0 or hi <= lo:
        raise ValueError(f"empty or negative time window [{lo}, {hi}) ns")
    return Window(lo, hi)


def group_keys(by: By) -> list[str]:
    """The grouping columns `by` names: any of `GROUP_KEYS`; `"vcpu"` alone means
    `["domain", "vcpu"]` (a VCPU id means nothing without its domain).

    >>> group_keys(["dom", "vcpu"])
    ['dom', 'vcpu']
    """
    keys = [by] if isinstance(by, str) else list(by)
    unknown = [k for k in keys if k not in GROUP_KEYS]
    if unknown or not keys:
        raise ValueError(f"cannot group by {unknown or keys}: choose from {', '.join(GROUP_KEYS)}")
    if keys == ["vcpu"]:
        return ["domain", "vcpu"]
    return keys


def domain_names(run: Run, dom: pd.Series | np.ndarray) -> np.ndarray:
    """The name of each domain id (run.json's `domains`); an id it lacks keeps its number."""
    names = run.domains
    ids, where = np.unique(np.asarray(dom, dtype="int64"), return_inverse=True)
    known = np.array([names.get(int(d), str(int(d))) for d in ids], dtype=object)
    return known[where]


def in_window(t_ns: pd.Series, window: Window) -> np.ndarray:
    """Which of the times fall inside the window (start inclusive, end exclusive)."""
    t = np.asarray(t_ns, dtype="int64")
    return (t >= window.start) & (t < window.end)


def bin_edges(window: Window, bin_ns: int) -> np.ndarray:
    """Bin start times from the window's start in steps of `bin_ns`; the last bin may be
    shorter (it ends at the window's end)."""
    if bin_ns <= 0:
        raise ValueError(f"bin width must be positive, not {bin_ns} ns")
    return np.arange(window.start, window.end, int(bin_ns), dtype="int64")


def split_by_bins(
    begin: np.ndarray, stop: np.ndarray, window: Window, bin_ns: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut intervals `[begin, stop)` (already inside the window) at bin boundaries.

    Returns (interval index, bin start, ns inside that bin) for each piece; an interval
    crossing k boundaries gives k + 1 pieces, so the work grows with intervals plus bins.
    """
    begin = np.asarray(begin, dtype="int64")
    stop = np.asarray(stop, dtype="int64")
    keep = stop > begin
    idx = np.flatnonzero(keep)
    first = (begin[keep] - window.start) // bin_ns
    last = (stop[keep] - 1 - window.start) // bin_ns
    count = last - first + 1
    piece_of = np.repeat(idx, count)
    offset = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    bin_no = np.repeat(first, count) + offset
    lo = window.start + bin_no * bin_ns
    hi = np.minimum(lo + bin_ns, window.end)
    ns = np.minimum(stop[piece_of], hi) - np.maximum(begin[piece_of], lo)
    return piece_of, lo, ns
