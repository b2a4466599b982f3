"""Virtual I/O throughput over time: bytes each block device completed and each vif
received, per time bin, in decimal MB/s (10**6 bytes per second, as the scenario's units).

A block request's bytes are those of its `blk.submit` (the latest one of the same domain,
device and request id before its `blk.complete`); only requests completed okay (status
0) count, at their completion time. Network bytes are the receiving netfront's `net.rx`.

>>> import analysis
>>> run = analysis.load_run("runs/io")                                   # doctest: +SKIP
>>> io_throughput_series(run, bin_ns=100_000_000).head(2)                # doctest: +SKIP
                                 bytes       mb_s
t_ns      domain io    dev
0         disk   block 51712   2883584   28.83584
                 net   0      12472600  124.72600
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import numpy as np
import pandas as pd

import analysis.accessor  # noqa: F401  (registers DataFrame.xen)
from analysis.window import DEFAULT_BIN_NS, bin_edges, domain_names, in_window, resolve_window

if TYPE_CHECKING:
    from analysis.run import Run

__all__ = ["THROUGHPUT_INDEX", "io_throughput_series", "io_transfers"]

THROUGHPUT_INDEX: Final = ("t_ns", "domain", "io", "dev")
_REQUEST: Final = ["dom", "dev", "req_id"]
_NS_PER_S: Final = 1e9


def _block_transfers(run: Run) -> pd.DataFrame:
    """(t_ns, dom, dev, bytes) of each block request completed okay."""
    sub = run.trace.xen.kind("blk.submit")[["t_ns", *_REQUEST, "bytes"]].astype("int64")
    comp = run.trace.xen.kind("blk.complete")
    comp = comp[comp["status"] == 0][["t_ns", *_REQUEST]].astype("int64")
    matched = pd.merge_asof(
        comp, sub, on="t_ns", by=_REQUEST, direction="backward", allow_exact_matches=False
    )
    matched = matched[matched["bytes"].notna()]
    return matched[["t_ns", "dom", "dev"]].assign(bytes=matched["bytes"].astype("int64"))


def io_transfers(run: Run, start: int | None = None, end: int | None = None) -> pd.DataFrame:
    """Every completed transfer inside `[start, end)`: t_ns (completion or receipt), dom,
    domain, io ("block" or "net"), dev, bytes; in time order.

    >>> io_transfers(run).groupby(["domain", "io"])["bytes"].sum()      # doctest: +SKIP
    """
    window = resolve_window(run, start, end)
    rx = run.trace.xen.kind("net.rx")[["t_ns", "dom", "dev", "bytes"]].astype("int64")
    parts = [_block_transfers(run).assign(io="block"), rx.assign(io="net")]
    rows = pd.concat(parts, ignore_index=True).sort_values("t_ns", kind="stable")
    rows = rows[in_window(rows["t_ns"], window)]
    out = rows[["t_ns", "dom"]].assign(domain=domain_names(run, rows["dom"]))
    out = out.assign(io=rows["io"].to_numpy(dtype=object), dev=rows["dev"], bytes=rows["bytes"])
    return out.reset_index(drop=True)


def io_throughput_series(
    run: Run, bin_ns: int = DEFAULT_BIN_NS, start: int | None = None, end: int | None = None
) -> pd.DataFrame:
    """Bytes and MB/s per bin and device: index `THROUGHPUT_INDEX` (t_ns = the bin's start),
    every bin present for every device that moved data in the window (0 when idle). A bin
    cut short by the window's end is divided by its own length.

    >>> io_throughput_series(run, 50_000_000).xs("net", level="io")     # doctest: +SKIP
    """
    window = resolve_window(run, start, end)
    edges = bin_edges(window, bin_ns)
    rows = io_transfers(run, window.start, window.end)
    rows["t_ns"] = edges[(rows["t_ns"].to_numpy(dtype="int64") - window.start) // bin_ns]
    devices = rows[["domain", "io", "dev"]].drop_duplicates().sort_values(["domain", "io", "dev"])
    keys = list(THROUGHPUT_INDEX)
    sums = rows.groupby(keys, sort=True)["bytes"].sum()
    full = pd.MultiIndex.from_tuples(
        [(t, *dev) for t in edges for dev in devices.itertuples(index=False)], names=keys
    )
    total = sums.reindex(full, fill_value=0).astype("int64")
    width = np.minimum(edges + bin_ns, window.end) - edges
    seconds = pd.Series(width / _NS_PER_S, index=pd.Index(edges, name="t_ns"))
    mb_s = total / seconds.reindex(total.index.get_level_values("t_ns")).to_numpy() / 1e6
    return pd.DataFrame({"bytes": total, "mb_s": mb_s.astype("float64")})
