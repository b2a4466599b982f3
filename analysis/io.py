"""Virtual I/O metrics from a trace: block and network throughput and latency, and the
balance of grant mappings and TCE entries that a clean teardown must bring back to zero.

Every function takes a trace DataFrame shaped like `Recorder.to_dataframe()` (rows in
emission order, which is simulated-time order) and is vectorised: no Python loop runs
over records. A trace without the records a function reads gives an empty DataFrame with
the documented columns, so a run without I/O needs no special case.

Rates are decimal, as the scenario's units are: MB/s is 10**6 bytes per second, Mbit/s
10**6 bits per second. Latency percentiles interpolate linearly (numpy's default).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.views import field_column

__all__ = [
    "BLOCK_STATS_COLUMNS",
    "GRANT_BALANCE_COLUMNS",
    "NET_BOOKS_COLUMNS",
    "NET_STATS_COLUMNS",
    "TCE_BALANCE_COLUMNS",
    "block_stats",
    "grant_balance",
    "net_books",
    "net_stats",
    "tce_balance",
]

BLOCK_STATS_COLUMNS = (
    "submitted",
    "completed",
    "errors",
    "reads",
    "writes",
    "bytes",
    "iops",
    "mb_s",
    "lat_p50_us",
    "lat_p90_us",
    "lat_p99_us",
    "lat_max_us",
    "verify_failures",
    "outstanding",
)
NET_STATS_COLUMNS = (
    "tx_packets",
    "tx_bytes",
    "rx_packets",
    "rx_bytes",
    "drops",
    "rx_mbit_s",
    "rx_lat_p50_us",
    "rx_lat_p99_us",
)
NET_BOOKS_COLUMNS = ("sent", "received", "dropped", "unaccounted", "extra")
GRANT_BALANCE_COLUMNS = ("maps_ok", "map_errors", "unmaps_ok", "unmap_errors", "still_mapped")
TCE_BALANCE_COLUMNS = ("maps", "clears", "live")

_DEVICE = ["dom", "dev"]
_REQUEST = ["dom", "dev", "req_id"]
_NS_PER_S = 1e9
_NS_PER_US = 1e3
# Columns a trace frame must have for any of these functions.
_TRACE_COLUMNS = ("t_ns", "dom", "kind")


def _records(
    df: pd.DataFrame, kind: str, fields: Sequence[str], text: bool = False
) -> pd.DataFrame:
    """Rows of one kind: seq (row position in the trace), t_ns, dom, its fields as int64.

    `seq` orders records that share a t_ns the way they were emitted, which `t_ns` alone
    cannot.
    """
    missing = [c for c in _TRACE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"not a xen970 trace: missing columns {', '.join(missing)}")
    mask = (df["kind"] == kind).to_numpy(dtype=bool, na_value=False)
    rows = df.loc[mask]
    out = pd.DataFrame(
        {
            "seq": np.flatnonzero(mask).astype("int64"),
            "t_ns": rows["t_ns"].to_numpy(dtype="int64"),
            "dom": rows["dom"].to_numpy(dtype="int64"),
        }
    )
    for name in fields:
        column = field_column(df, kind, name)
        if column not in df.columns:
            raise ValueError(f"trace has {kind} records but no {name!r} column")
        out[name] = rows[column].to_numpy(dtype="int64")
    if text:
        out["text"] = rows["text"].to_numpy(dtype=object, na_value=None)
    return out


def _index(keys: Sequence[str], *frames: pd.DataFrame) -> pd.Index:
    """The sorted distinct key tuples found in any of the frames (empty index if none)."""
    found = pd.concat([f[list(keys)] for f in frames], ignore_index=True).drop_duplicates()
    found = found.sort_values(list(keys))
    if len(keys) == 1:
        return pd.Index(found[keys[0]], name=keys[0], dtype="int64")
    return pd.MultiIndex.from_frame(found)


def _count(frame: pd.DataFrame, keys: Sequence[str], index: pd.Index) -> pd.Series:
    """Rows per key, 0 for keys without rows."""
    counts = frame.groupby(list(keys)).size()
    return counts.reindex(index, fill_value=0).astype("int64")


def _total(
    values: pd.Series, frame: pd.DataFrame, keys: Sequence[str], index: pd.Index
) -> pd.Series:
    """Sum of `values` (aligned with `frame`) per key, 0 for keys without rows."""
    sums = values.groupby([frame[k] for k in keys]).sum()
    return sums.reindex(index, fill_value=0).astype("int64")


def _percentiles_us(
    frame: pd.DataFrame,
    column: str,
    keys: Sequence[str],
    percentiles: Sequence[float],
    index: pd.Index,
) -> pd.DataFrame:
    """Percentiles of an ns column per key, in microseconds; NaN for keys without rows."""
    names = [f"p{p:g}" for p in percentiles]
    if frame.empty:
        return pd.DataFrame(np.nan, index=index, columns=names)
    q = frame.groupby(list(keys))[column].quantile([p / 100 for p in percentiles]).unstack()
    q.columns = names
    return q.reindex(index) / _NS_PER_US


def _rate(amount: pd.Series, span_ns: pd.Series) -> pd.Series:
    """amount per second over span_ns; NaN where the span is missing or not positive."""
    seconds = span_ns.astype("float64").where(span_ns > 0) / _NS_PER_S
    return amount.astype("float64") / seconds


def block_stats(df: pd.DataFrame, duration_ns: int | None = None) -> pd.DataFrame:
    """Per block device, indexed by (dom, dev): the columns `BLOCK_STATS_COLUMNS`.

    A blkif request id may be reused once its response is in, so each blk.complete is
    matched with the latest blk.submit of the same (dom, dev, req_id) emitted before it
    (an as-of join on row position, not on t_ns, so records of the same instant keep
    their emission order). The submit supplies the request's `bytes`; `bytes` counts only
    requests completed okay (status 0); `errors` counts the others. `reads` and `writes`
    count completed requests by operation; latencies are blk.complete's `latency_ns` over
    all completions. `iops` and `mb_s` divide by the span from the device's first submit
    to its last completion, or by `duration_ns` when given (e.g. the run's sim_ns); NaN
    when that span is empty.
    """
    sub = _records(df, "blk.submit", ("dev", "req_id", "bytes"))
    comp = _records(df, "blk.complete", ("dev", "req_id", "status", "latency_ns"), text=True)
    verify = _records(df, "blk.verify", ("dev",))
    index = _index(_DEVICE, sub, comp, verify)
    matched = pd.merge_asof(
        comp,
        sub[["seq", *_REQUEST, "bytes"]],
        on="seq",
        by=_REQUEST,
        direction="backward",
        allow_exact_matches=False,
    )
    ok = matched["status"] == 0
    submitted = _count(sub, _DEVICE, index)
    completed = _count(comp, _DEVICE, index)
    done_bytes = _total(matched["bytes"].where(ok, 0).fillna(0), matched, _DEVICE, index)
    if duration_ns is None:
        first = sub.groupby(_DEVICE)["t_ns"].min().reindex(index)
        last = comp.groupby(_DEVICE)["t_ns"].max().reindex(index)
        span = last - first
    else:
        span = pd.Series(float(duration_ns), index=index)
    lat = _percentiles_us(comp, "latency_ns", _DEVICE, (50, 90, 99), index)
    out = pd.DataFrame(
        {
            "submitted": submitted,
            "completed": completed,
            "errors": _total(~ok, matched, _DEVICE, index),
            "reads": _total(matched["text"] == "read", matched, _DEVICE, index),
            "writes": _total(matched["text"] == "write", matched, _DEVICE, index),
            "bytes": done_bytes,
            "iops": _rate(completed, span),
            "mb_s": _rate(done_bytes, span) / 1e6,
            "lat_p50_us": lat["p50"],
            "lat_p90_us": lat["p90"],
            "lat_p99_us": lat["p99"],
            "lat_max_us": comp.groupby(_DEVICE)["latency_ns"].max().reindex(index) / _NS_PER_US,
            "verify_failures": _count(verify, _DEVICE, index),
            "outstanding": submitted - completed,
        },
        index=index,
        columns=list(BLOCK_STATS_COLUMNS),
    )
    return out.astype({c: "float64" for c in BLOCK_STATS_COLUMNS if c.endswith(("_us", "_s"))})


def net_stats(df: pd.DataFrame) -> pd.DataFrame:
    """Per vif, indexed by (dom, dev): the columns `NET_STATS_COLUMNS`.

    A row's dom is the domain that emitted the record: the sender for net.tx, the receiver
    for net.rx, whoever dropped the packet for net.drop. `rx_mbit_s` is the received bytes
    over the span from the device's first to its last net.rx record (NaN with fewer than
    two distinct times); rx latencies are net.rx's `latency_ns` (send to receipt).
    """
    tx = _records(df, "net.tx", ("dev", "bytes"))
    rx = _records(df, "net.rx", ("dev", "bytes", "latency_ns"))
    drop = _records(df, "net.drop", ("dev",))
    index = _index(_DEVICE, tx, rx, drop)
    rx_bytes = _total(rx["bytes"], rx, _DEVICE, index)
    rx_times = rx.groupby(_DEVICE)["t_ns"]
    span = (rx_times.max() - rx_times.min()).reindex(index)
    lat = _percentiles_us(rx, "latency_ns", _DEVICE, (50, 99), index)
    out = pd.DataFrame(
        {
            "tx_packets": _count(tx, _DEVICE, index),
            "tx_bytes": _total(tx["bytes"], tx, _DEVICE, index),
            "rx_packets": _count(rx, _DEVICE, index),
            "rx_bytes": rx_bytes,
            "drops": _count(drop, _DEVICE, index),
            "rx_mbit_s": _rate(rx_bytes * 8, span) / 1e6,
            "rx_lat_p50_us": lat["p50"],
            "rx_lat_p99_us": lat["p99"],
        },
        index=index,
        columns=list(NET_STATS_COLUMNS),
    )
    return out.astype({c: "float64" for c in NET_STATS_COLUMNS if c.endswith(("_us", "_s"))})


def net_books(df: pd.DataFrame) -> pd.DataFrame:
    """Per sending stream, indexed by (src_dom, src_dev): the columns `NET_BOOKS_COLUMNS`.

    A packet id (`pkt`) names one packet of the run: its stream (the sender's domain and
    vif) in the high 32 bits, its sequence number in the low 32; net.tx, net.rx and
    net.drop carry the same id. Each sent packet should get exactly one net.rx or
    net.drop. `received` and `dropped` count those of sent packets; `unaccounted` counts
    sent packets with neither (in flight when the run ended, or lost unrecorded); `extra`
    counts records beyond one per sent packet (a second fate, or one for a packet never
    sent: a net.drop with pkt -1 counts under stream (-1, -1)). Once a run's traffic has
    ended, sent = received + dropped and `unaccounted` = `extra` = 0 for every stream.
    """
    tx = _records(df, "net.tx", ("pkt",))
    rx = _records(df, "net.rx", ("pkt",)).assign(rx=1)
    drop = _records(df, "net.drop", ("pkt",)).assign(rx=0)
    fates = pd.concat([rx, drop], ignore_index=True).sort_values("seq", kind="stable")
    for frame in (tx, fates):
        pkt = frame["pkt"].to_numpy(dtype="int64")
        frame["src_dom"] = np.where(pkt < 0, -1, pkt >> 48)
        frame["src_dev"] = np.where(pkt < 0, -1, (pkt >> 32) & 0xFFFF)
    keys = ["src_dom", "src_dev"]
    index = _index(keys, tx, fates)
    sent = tx.drop_duplicates("pkt")
    # A sent packet's first record is its fate; any other record is extra.
    first = fates["pkt"].isin(sent["pkt"]) & ~fates.duplicated("pkt")
    fated = fates[first]
    n_sent = _count(sent, keys, index)
    received = _total(fated["rx"], fated, keys, index)
    dropped = _count(fated, keys, index) - received
    extra = _count(fates[~first], keys, index) + _count(tx, keys, index) - n_sent
    return pd.DataFrame(
        {
            "sent": n_sent,
            "received": received,
            "dropped": dropped,
            "unaccounted": n_sent - received - dropped,
            "extra": extra,
        },
        index=index,
        columns=list(NET_BOOKS_COLUMNS),
    )


def grant_balance(df: pd.DataFrame) -> pd.DataFrame:
    """Per mapping domain (index dom): grant maps and unmaps, okay and failed.

    `still_mapped` = maps_ok - unmaps_ok: what a domain still holds of other domains'
    pages; after every guest is destroyed it must be 0 for dom0.
    """
    maps = _records(df, "gnttab.map", ("status",))
    unmaps = _records(df, "gnttab.unmap", ("status",))
    index = _index(["dom"], maps, unmaps)
    maps_ok = _total(maps["status"] == 0, maps, ["dom"], index)
    unmaps_ok = _total(unmaps["status"] == 0, unmaps, ["dom"], index)
    return pd.DataFrame(
        {
            "maps_ok": maps_ok,
            "map_errors": _total(maps["status"] != 0, maps, ["dom"], index),
            "unmaps_ok": unmaps_ok,
            "unmap_errors": _total(unmaps["status"] != 0, unmaps, ["dom"], index),
            "still_mapped": maps_ok - unmaps_ok,
        },
        index=index,
        columns=list(GRANT_BALANCE_COLUMNS),
    )


def tce_balance(df: pd.DataFrame) -> pd.DataFrame:
    """Per IOMMU table (index liobn): H_PUT_TCEs that mapped a frame, that cleared an
    entry (mfn 0), and the entries live at the end: (liobn, ioba) pairs whose last put
    mapped a frame.
    """
    puts = _records(df, "tce.put", ("liobn", "ioba", "mfn"))
    index = _index(["liobn"], puts)
    last = puts.drop_duplicates(["liobn", "ioba"], keep="last")
    return pd.DataFrame(
        {
            "maps": _total(puts["mfn"] != 0, puts, ["liobn"], index),
            "clears": _total(puts["mfn"] == 0, puts, ["liobn"], index),
            "live": _total(last["mfn"] != 0, last, ["liobn"], index),
        },
        index=index,
        columns=list(TCE_BALANCE_COLUMNS),
    )
