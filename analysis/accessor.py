"""`DataFrame.xen`: trace metrics (CPU time, runstate shares, hypercalls, event latency,
virtual I/O).

Registered on import of `analysis`. Methods assume the trace's rows are in emission order,
which is simulated-time order; none of them sorts. Kinds and runstate names come from the
trace's own metadata (`analysis.trace_metadata`), never from the simulator.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis import io as io_metrics
from analysis import views
from analysis.trace_metadata import TraceMetadata, trace_metadata

__all__ = ["XenAccessor"]

REQUIRED_COLUMNS = ("t_ns", "cpu", "dom", "vcpu", "kind")


@pd.api.extensions.register_dataframe_accessor("xen")
class XenAccessor:
    """Trace metrics on a DataFrame shaped like `Recorder.to_dataframe()` output."""

    def __init__(self, df: pd.DataFrame) -> None:
        missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
        if missing:
            raise AttributeError(f"not a xen970 trace: missing columns {', '.join(missing)}")
        self._df = df

    @property
    def metadata(self) -> TraceMetadata:
        """The trace's description (kinds, value names) from the frame's attrs."""
        return trace_metadata(self._df)

    def kind(self, name: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Rows of one kind with t_ns, cpu, dom, vcpu, that kind's fields by name (as
        int64) and text if it has one; `columns` keeps only those. The index is the
        trace's."""
        return views.kind_view(self._df, name, columns)

    def field(self, name: str) -> pd.Series:
        """One field by name over every row (nullable Int64, <NA> where the row's kind has
        no such field), e.g. `df.xen.field("state")`."""
        return views.field_values(self._df, name)

    def wide(self, kinds: Sequence[str] | None = None) -> pd.DataFrame:
        """The rows of `kinds` (default all) in the wide layout of trace version 2: one
        nullable Int64 column per field name (`analysis.views.wide`)."""
        return views.wide(self._df, kinds)

    def _runstate_intervals(self, end_ns: int) -> pd.DataFrame:
        """(dom, vcpu, state, ns) for each runstate record, cut off at end_ns."""
        rs = self.kind("sched.runstate")
        nxt = rs.groupby(["dom", "vcpu"], sort=False)["t_ns"].shift(-1)
        stop = nxt.fillna(end_ns).astype("int64").clip(upper=end_ns)
        ns = (stop - rs["t_ns"]).clip(lower=0)
        return pd.DataFrame({"dom": rs["dom"], "vcpu": rs["vcpu"], "state": rs["state"], "ns": ns})

    def per_domain_cpu_time(self, end_ns: int) -> pd.Series:
        """Running ns per domain, summed over its VCPUs; open intervals close at end_ns."""
        iv = self._runstate_intervals(end_ns)
        running = iv["ns"].where(iv["state"] == self.metadata.code_of("state", "running"), 0)
        out = running.groupby(iv["dom"]).sum().astype("int64")
        out.index.name = "dom"
        return out.rename("cpu_time_ns")

    def runstate_shares(self, end_ns: int) -> pd.DataFrame:
        """Fraction of each domain's tracked VCPU time spent in each runstate.

        The denominator is the time covered by runstate records (from each VCPU's first
        record to end_ns), so each row sums to 1.
        """
        names = self.metadata.names_of("state")
        iv = self._runstate_intervals(end_ns)
        table = iv.pivot_table(index="dom", columns="state", values="ns", aggfunc="sum")
        table = table.reindex(columns=range(len(names)), fill_value=0).fillna(0)
        table.columns = pd.Index(names)
        total = table.sum(axis=1).replace(0, np.nan)
        shares = table.div(total, axis=0).fillna(0.0).astype("float64")
        shares.index = shares.index.astype("int64")
        shares.index.name = "dom"
        return shares

    def hcall_counts(self) -> pd.Series:
        """Hypercalls made, indexed by (dom, call name); unnamed calls appear as '#<nr>'."""
        calls = self.kind("hcall.enter")
        names = calls["text"].astype(object)
        unnamed = names.isna()
        names[unnamed] = "#" + calls.loc[unnamed, "nr"].astype(str)
        out = calls.groupby([calls["dom"], names.rename("call")]).size()
        out.index = out.index.set_names(["dom", "call"])
        return out.rename("count").astype("int64")

    def event_counts(self) -> pd.DataFrame:
        """Per domain: events sent, marked pending in it, upcalls taken, events handled."""
        wanted = {
            "sent": "evtchn.send",
            "pending": "evtchn.pending",
            "upcalls": "evtchn.upcall",
            "handled": "evtchn.handled",
        }
        cols = {
            col: self._df.loc[self._df["kind"] == kind, "dom"].value_counts()
            for col, kind in wanted.items()
        }
        out = pd.DataFrame(cols).fillna(0).astype("int64").sort_index()
        out.index = out.index.astype("int64")
        out.index.name = "dom"
        return out

    def upcall_latency(self) -> pd.Series:
        """ns from each evtchn.pending record to the next evtchn.upcall on the same dom/vcpu.

        The vcpu of a pending record is the VCPU Xen notified. Several pendings before one
        upcall each get their own latency to that upcall; pendings never followed by an
        upcall are left out. Indexed by (dom, vcpu), in emission order.
        """
        df = self._df
        sub = df.loc[df["kind"].isin(["evtchn.pending", "evtchn.upcall"]), ["t_ns", "dom", "vcpu"]]
        is_up = (df.loc[sub.index, "kind"] == "evtchn.upcall").to_numpy()
        upcall_t = sub["t_ns"].astype("Int64").where(is_up)
        next_up = upcall_t.groupby([sub["dom"], sub["vcpu"]], sort=False).bfill()
        pending = ~is_up & next_up.notna().to_numpy()
        lat = (next_up[pending] - sub["t_ns"][pending]).astype("int64")
        index = pd.MultiIndex.from_arrays(
            [sub["dom"][pending].astype("int64"), sub["vcpu"][pending].astype("int64")],
            names=["dom", "vcpu"],
        )
        return pd.Series(lat.to_numpy(), index=index, name="upcall_latency_ns")

    @staticmethod
    def latency_percentiles(
        series: pd.Series, percentiles: Sequence[float] = (50, 99)
    ) -> pd.Series:
        """Percentiles (linear interpolation, as numpy's default) of a latency Series."""
        values = np.asarray(series, dtype="float64")
        if values.size == 0:
            result = np.full(len(percentiles), np.nan)
        else:
            result = np.percentile(values, list(percentiles))
        return pd.Series(result, index=pd.Index(list(percentiles), name="percentile"))

    def block_stats(self, duration_ns: int | None = None) -> pd.DataFrame:
        """Per (dom, dev) block I/O counts, throughput and latency (`analysis.io.block_stats`)."""
        return io_metrics.block_stats(self._df, duration_ns)

    def net_stats(self) -> pd.DataFrame:
        """Per (dom, dev) network packets, drops, rx rate and latency (`analysis.io.net_stats`)."""
        return io_metrics.net_stats(self._df)

    def net_books(self) -> pd.DataFrame:
        """Per sending stream, each packet's one fate: received, dropped or neither
        (`analysis.io.net_books`)."""
        return io_metrics.net_books(self._df)

    def grant_balance(self) -> pd.DataFrame:
        """Per mapping domain grant maps and unmaps (`analysis.io.grant_balance`)."""
        return io_metrics.grant_balance(self._df)

    def tce_balance(self) -> pd.DataFrame:
        """Per liobn TCE maps, clears and live entries (`analysis.io.tce_balance`)."""
        return io_metrics.tce_balance(self._df)
