"""A run as Chrome trace-event JSON, which ui.perfetto.dev and chrome://tracing open.

The Trace Event Format's JSON object form (`traceEvents`, `displayTimeUnit`,
`otherData`) with these tracks:

- the host, one process (pid 1) with one thread per physical CPU: a complete ("X")
  slice for each interval a VCPU ran there (from `sched.switch`, named
  `<domain> v<vcpu>`), instants ("i") for the IPIs it sent and took and the event upcalls
  it delivered, and a counter ("C") `runq CPU<n>` of the runnable VCPUs queued on it;
- each domain, one process (pid `DOMAIN_PID_BASE + domid`) with one thread per VCPU:
  a slice per runstate interval (`running`, `runnable`, `blocked`, `offline`, from
  `sched.runstate`) and an instant at each wake.

Timestamps are microseconds written from the simulated nanoseconds as exact decimals
(`12.345` is 12 345 ns), so nothing is lost to float rounding; intervals still open when
the run ends close at its end. A runnable VCPU is counted on the queue of the CPU it last
ran on (Xen's `v->processor`, where credit queues it), or, before its first run, of the
CPU it first runs on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Final, TextIO

import numpy as np
import pandas as pd

import analysis.accessor  # noqa: F401  (registers DataFrame.xen)
from analysis.run import Run

__all__ = [
    "CPU_TID_BASE",
    "DOMAIN_PID_BASE",
    "FILE_NAME",
    "HOST_PID",
    "VCPU_TID_BASE",
    "write_perfetto",
]

#: Where `xen970 export --format perfetto` writes in the run directory by default.
FILE_NAME: Final = "trace.perfetto.json"
#: The host's process; its CPU threads are CPU_TID_BASE + cpu.
HOST_PID: Final = 1
CPU_TID_BASE: Final = 1_000
#: Domain d's process; its VCPU v's thread is VCPU_TID_BASE + d * VCPU_TID_STRIDE + v.
DOMAIN_PID_BASE: Final = 100_000
VCPU_TID_BASE: Final = 1_000_000
VCPU_TID_STRIDE: Final = 1_000


def _us(ns: int) -> str:
    """Nanoseconds as exact microseconds text (JSON number)."""
    return f"{ns // 1000}.{ns % 1000:03d}"


def _vcpu_tid(dom: int, vcpu: int) -> int:
    return VCPU_TID_BASE + dom * VCPU_TID_STRIDE + vcpu


class _Writer:
    """Events as JSON lines of the traceEvents array; text fields escaped once each."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.names = run.domains
        self._labels: dict[tuple[int, int], str] = {}

    def vcpu_name(self, dom: int, vcpu: int) -> str:
        """`<domain> v<vcpu>`, the domain by its name."""
        return f"{self.names.get(dom, f'dom{dom}')} v{vcpu}"

    def label(self, dom: int, vcpu: int) -> str:
        """`vcpu_name` as a JSON string."""
        key = (dom, vcpu)
        if key not in self._labels:
            self._labels[key] = json.dumps(self.vcpu_name(dom, vcpu))
        return self._labels[key]

    @staticmethod
    def meta(what: str, pid: int, tid: int | None, args: dict[str, object]) -> str:
        thread = "" if tid is None else f',"tid":{tid}'
        return (
            f'{{"ph":"M","name":"{what}","pid":{pid}{thread},"args":'
            f"{json.dumps(args, sort_keys=True)}}}"
        )


def _metadata(w: _Writer, cpus: list[int], vcpus: pd.DataFrame) -> Iterator[str]:
    run = w.run
    host = f"{run.meta.get('scenario', 'run')} host ({len(cpus)} CPUs)"
    yield w.meta("process_name", HOST_PID, None, {"name": host})
    yield w.meta("process_sort_index", HOST_PID, None, {"sort_index": 0})
    for cpu in cpus:
        yield w.meta("thread_name", HOST_PID, CPU_TID_BASE + cpu, {"name": f"CPU {cpu}"})
        yield w.meta("thread_sort_index", HOST_PID, CPU_TID_BASE + cpu, {"sort_index": cpu})
    for dom in sorted(set(vcpus["dom"])):
        pid = DOMAIN_PID_BASE + dom
        name = f"{w.names.get(dom, f'dom{dom}')} (dom {dom})"
        yield w.meta("process_name", pid, None, {"name": name})
        yield w.meta("process_sort_index", pid, None, {"sort_index": 1 + dom})
    for dom, vcpu in vcpus.itertuples(index=False):
        tid = _vcpu_tid(dom, vcpu)
        yield w.meta("thread_name", DOMAIN_PID_BASE + dom, tid, {"name": w.vcpu_name(dom, vcpu)})
        yield w.meta("thread_sort_index", DOMAIN_PID_BASE + dom, tid, {"sort_index": vcpu})


def cpu_run_intervals(run: Run) -> pd.DataFrame:
    """(cpu, dom, vcpu, start_ns, end_ns) of each interval a VCPU ran on a CPU, from the
    CPU's switches; the last closes at the run's end, idle intervals are left out."""
    sw = run.trace.xen.kind("sched.switch")
    end = sw.groupby("cpu", sort=False)["t_ns"].shift(-1).fillna(run.sim_ns).astype("int64")
    out = pd.DataFrame(
        {
            "cpu": sw["cpu"].astype("int64"),
            "dom": sw["dom"].astype("int64"),
            "vcpu": sw["vcpu"].astype("int64"),
            "start_ns": sw["t_ns"].astype("int64"),
            "end_ns": end,
        }
    )
    return out[(out["dom"] >= 0) & (out["end_ns"] > out["start_ns"])].reset_index(drop=True)


def _cpu_slices(w: _Writer, runs: pd.DataFrame) -> Iterator[str]:
    for cpu, dom, vcpu, start, end in runs.itertuples(index=False):
        yield (
            f'{{"ph":"X","pid":{HOST_PID},"tid":{CPU_TID_BASE + cpu},"ts":{_us(start)},'
            f'"dur":{_us(end - start)},"name":{w.label(dom, vcpu)},"cat":"vcpu",'
            f'"args":{{"dom":{dom},"vcpu":{vcpu}}}}}'
        )


def _runstate_intervals(run: Run) -> pd.DataFrame:
    """Each VCPU's runstate intervals: dom, vcpu, state, start_ns, end_ns, cpu (-1 if none)."""
    rs = run.trace.xen.kind("sched.runstate")
    end = rs.groupby(["dom", "vcpu"], sort=False)["t_ns"].shift(-1).fillna(run.sim_ns)
    return pd.DataFrame(
        {
            "dom": rs["dom"].astype("int64"),
            "vcpu": rs["vcpu"].astype("int64"),
            "state": rs["state"].astype("int64"),
            "start_ns": rs["t_ns"].astype("int64"),
            "end_ns": end.astype("int64"),
            "cpu": rs["cpu"].astype("int64"),
        },
        index=rs.index,
    )


def _vcpu_slices(w: _Writer, iv: pd.DataFrame) -> Iterator[str]:
    names = [json.dumps(n) for n in w.run.trace.xen.metadata.names_of("state")]
    shown = iv[iv["end_ns"] > iv["start_ns"]]
    for dom, vcpu, state, start, end, _ in shown.itertuples(index=False):
        yield (
            f'{{"ph":"X","pid":{DOMAIN_PID_BASE + dom},"tid":{_vcpu_tid(dom, vcpu)},'
            f'"ts":{_us(start)},"dur":{_us(end - start)},"name":{names[state]},'
            f'"cat":"runstate"}}'
        )


def run_queue_lengths(run: Run) -> pd.DataFrame:
    """(t_ns, cpu, runnable): each CPU's run-queue length from each time it changes.

    A runnable VCPU waits on the queue of the CPU it last ran on, or before its first run
    on the CPU it first runs on (CPU 0 if it never runs).
    """
    iv = _runstate_intervals(run)
    running = iv["cpu"].where((iv["state"] == _code(run, "running")) & (iv["cpu"] >= 0))
    groups = running.astype("float64").groupby([iv["dom"], iv["vcpu"]], sort=False)
    home = groups.ffill().fillna(groups.bfill()).fillna(0).astype("int64")
    waiting = iv[iv["state"] == _code(run, "runnable")]
    cpu = home[waiting.index].to_numpy()
    deltas = pd.DataFrame(
        {
            "t_ns": np.concatenate([waiting["start_ns"], waiting["end_ns"]]),
            "cpu": np.concatenate([cpu, cpu]),
            "delta": np.repeat([1, -1], len(waiting)),
        }
    )
    deltas = deltas.sort_values(["t_ns", "delta"], kind="stable")
    deltas["runnable"] = deltas.groupby("cpu")["delta"].cumsum()
    last = deltas.drop_duplicates(["cpu", "t_ns"], keep="last")
    return last[["t_ns", "cpu", "runnable"]].reset_index(drop=True)


def _code(run: Run, state: str) -> int:
    return run.trace.xen.metadata.code_of("state", state)


def _counters(queues: pd.DataFrame) -> Iterator[str]:
    for t, cpu, n in queues.itertuples(index=False):
        yield (
            f'{{"ph":"C","pid":{HOST_PID},"ts":{_us(t)},"name":"runq CPU{cpu}",'
            f'"args":{{"runnable":{n}}}}}'
        )


def _instants(w: _Writer) -> Iterator[str]:
    xen = w.run.trace.xen
    for t, cpu, target, ipi in xen.kind("ipi.send")[["t_ns", "cpu", "target_cpu", "ipi"]].values:
        yield _instant(
            HOST_PID, CPU_TID_BASE + cpu, t, '"IPI send"', "ipi", target_cpu=target, ipi=ipi
        )
    for t, cpu, ipi in xen.kind("ipi.recv")[["t_ns", "cpu", "ipi"]].values:
        yield _instant(HOST_PID, CPU_TID_BASE + cpu, t, '"IPI"', "ipi", ipi=ipi)
    upcalls = xen.kind("evtchn.upcall")
    upcalls = upcalls[upcalls["cpu"] >= 0]
    for t, cpu, dom, vcpu, sel in upcalls[["t_ns", "cpu", "dom", "vcpu", "pending_sel"]].values:
        name = json.dumps(f"upcall {w.vcpu_name(dom, vcpu)}")
        yield _instant(HOST_PID, CPU_TID_BASE + cpu, t, name, "evtchn", pending_sel=sel)
    for t, dom, vcpu, boost in xen.kind("sched.wake")[["t_ns", "dom", "vcpu", "boost"]].values:
        tid = _vcpu_tid(dom, vcpu)
        yield _instant(DOMAIN_PID_BASE + dom, tid, t, '"wake"', "sched", boost=boost)


def _instant(pid: int, tid: int, t: int, name: str, cat: str, **args: int) -> str:
    shown = ",".join(f'"{k}":{int(v)}' for k, v in args.items())
    return (
        f'{{"ph":"i","s":"t","pid":{pid},"tid":{tid},"ts":{_us(int(t))},"name":{name},'
        f'"cat":"{cat}","args":{{{shown}}}}}'
    )


def write_perfetto(run: Run, out: TextIO) -> int:
    """Write `run` as trace-event JSON to the open text file `out`; the events written."""
    w = _Writer(run)
    intervals = _runstate_intervals(run)
    vcpus = intervals[["dom", "vcpu"]].drop_duplicates().sort_values(["dom", "vcpu"])
    cpus = sorted(int(c) for c in pd.unique(run.trace["cpu"]) if c >= 0)
    other = {
        "scenario": run.meta.get("scenario"),
        "seed": run.meta.get("seed"),
        "sim_ns": run.sim_ns,
        "xen970": run.meta.get("versions", {}).get("xen970"),
    }
    out.write('{"displayTimeUnit":"ns","otherData":')
    out.write(json.dumps(other, sort_keys=True))
    out.write(',"traceEvents":[\n')
    parts = (
        _metadata(w, cpus, vcpus),
        _cpu_slices(w, cpu_run_intervals(run)),
        _vcpu_slices(w, intervals),
        _counters(run_queue_lengths(run)),
        _instants(w),
    )
    count = 0
    for part in parts:
        for line in part:
            out.write(",\n" if count else "")
            out.write(line)
            count += 1
    out.write("\n]}\n")
    return count
