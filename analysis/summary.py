"""The per-domain summary table `xen970 run` prints, computed from a run directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

import analysis.accessor  # noqa: F401  (registers DataFrame.xen)
from analysis.run import Run, load_run

__all__ = ["STALL_COLUMNS", "SUMMARY_COLUMNS", "stalled_workloads", "summarize", "summarize_dir"]

SUMMARY_COLUMNS = (
    "domain",
    "cpu_time_ms",
    "running %",
    "runnable %",
    "blocked %",
    "hcalls",
    "events sent",
    "events handled",
    "upcall p50 us",
    "upcall p99 us",
)


def summarize(run: Run) -> pd.DataFrame:
    """One row per domain (index: domain id), columns `SUMMARY_COLUMNS`.

    Times run to the run's simulated end (`sim_ns` in run.json); latency percentiles are
    NaN for a domain that took no upcall after a pending event.
    """
    trace = run.trace
    end = run.sim_ns
    cpu = trace.xen.per_domain_cpu_time(end)
    shares = trace.xen.runstate_shares(end)
    hcalls = trace.xen.hcall_counts().groupby(level="dom").sum()
    events = trace.xen.event_counts()
    latency = trace.xen.upcall_latency()
    names = run.domains
    doms = sorted(set(names) | {int(d) for d in trace["dom"].unique() if d >= 0})
    rows = []
    for dom in doms:
        lat = latency[latency.index.get_level_values("dom") == dom]
        p50, p99 = trace.xen.latency_percentiles(lat, [50, 99]).to_numpy() / 1000.0
        share = shares.loc[dom] if dom in shares.index else pd.Series(0.0, index=shares.columns)
        rows.append(
            {
                "domain": names.get(dom, str(dom)),
                "cpu_time_ms": cpu.get(dom, 0) / 1e6,
                "running %": 100.0 * float(share.get("running", 0.0)),
                "runnable %": 100.0 * float(share.get("runnable", 0.0)),
                "blocked %": 100.0 * float(share.get("blocked", 0.0)),
                "hcalls": int(hcalls.get(dom, 0)),
                "events sent": int(events["sent"].get(dom, 0)),
                "events handled": int(events["handled"].get(dom, 0)),
                "upcall p50 us": float(p50),
                "upcall p99 us": float(p99),
            }
        )
    out = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS), index=pd.Index(doms, name="dom"))
    return out.astype({"cpu_time_ms": np.float64, "hcalls": np.int64})


def summarize_dir(directory: str | Path) -> pd.DataFrame:
    """`summarize` of the run stored in `directory`."""
    return summarize(load_run(directory))


STALL_COLUMNS = ("domain", "kind", "vcpu", "workload", "why")


def stalled_workloads(run: Run) -> pd.DataFrame:
    """The workloads that made no progress for the whole run (run.json's
    `stalled_workloads`), one row each with `STALL_COLUMNS`; empty when all moved."""
    rows = run.meta.get("stalled_workloads", [])
    return pd.DataFrame(
        [{c: row.get(c) for c in STALL_COLUMNS} for row in rows], columns=STALL_COLUMNS
    )
