"""A run as the binary trace Xen's `xentrace` writes, for xenalyze and xentrace_format.

The format (xen/include/public/trace.h; tools/xentrace/xenalyze.c reads it, Xen >= 4.6):

- a record is a u32 header, `event:28 | extra words:3 | cycles flag:1` (bit 31), then
  `tsc_lo, tsc_hi` when the flag is set, then up to 7 extra u32 words;
- the file is a series of per-CPU windows: TRC_TRACE_CPU_CHANGE (no cycles; words: the
  CPU, then how many bytes of that CPU's records follow) and those records. The file
  starts with one, and each CPU's first window comes before any CPU's second, as
  xentrace's first pass over the per-CPU buffers writes them: xenalyze finds the CPUs by
  scanning those windows up to the first repeated CPU.

What is written, in trace order:

- TRC_SCHED_RUNSTATE_CHANGE (`0x00021001 | old << 8 | new << 4`, one word
  `vcpu | dom << 16`) for every `sched.runstate`, and for the idle VCPU (domain 32767,
  VCPU = the CPU) at each switch from or to idle, as Xen's `schedule()` traces it;
- TRC_SCHED_SWITCH (prev dom, prev vcpu, next dom, next vcpu), TRC_SCHED_WAKE and
  TRC_SCHED_BLOCK (dom, vcpu);
- TRC_PV_HYPERCALL_V2 for Xen hypercalls (number, then the first three arguments as
  64-bit values); PAPR calls (`H_*`) have no TRC class and are left out;
- TRC_SCHED_CONTINUE_RUNNING at the run's end for each VCPU still running: xenalyze
  counts a runstate interval only when the VCPU's next record closes it, and this is the
  record Xen writes when a VCPU keeps its CPU.

The cycle counter is the timebase: a record at `t_ns` has cycles
`round(t_ns * timebase_hz / 1e9)`, at least 1 (xenalyze takes 0 for "unset"), and raised
by a tick where the trace moves from one CPU's record to another's within one tick:
xenalyze merges the CPUs' records by cycles alone (a tie goes to the CPU it read last),
so this keeps the trace's own order, which a VCPU's runstate changes on two CPUs need.
Read the file with `xenalyze --cpu-hz=<timebase_hz>`. The timebase is the run's own
(run.json's `machine.timebase_hz`), or 33.333333 MHz for a run recorded before run.json
said it.

A record the trace has on no CPU (`cpu` -1: a wake) goes to the CPU where its VCPU runs
next (or last ran, for a record that takes it off a CPU). Words are little-endian, the
byte order of the x86 hosts xenalyze and xentrace_format run on (both read the file in
their host's order, as xentrace writes it in its own).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Final

import numpy as np
import pandas as pd

import analysis.accessor  # noqa: F401  (registers DataFrame.xen)
from analysis.run import Run

__all__ = [
    "DEFAULT_TIMEBASE_HZ",
    "FILE_NAME",
    "IDLE_DOMAIN",
    "TRC_PV_HYPERCALL_V2",
    "TRC_SCHED_BLOCK",
    "TRC_SCHED_CONTINUE_RUNNING",
    "TRC_SCHED_RUNSTATE_CHANGE",
    "TRC_SCHED_SWITCH",
    "TRC_SCHED_WAKE",
    "TRC_TRACE_CPU_CHANGE",
    "XentraceExportError",
    "run_timebase_hz",
    "write_xentrace",
]

# Event numbers of xen/include/public/trace.h.
TRC_TRACE_CPU_CHANGE: Final = 0x0001F003
TRC_SCHED_RUNSTATE_CHANGE: Final = 0x00021001
TRC_SCHED_CONTINUE_RUNNING: Final = 0x00021002
TRC_SCHED_WAKE: Final = 0x00028004
TRC_SCHED_BLOCK: Final = 0x00028006
TRC_SCHED_SWITCH: Final = 0x0002800A
TRC_PV_HYPERCALL_V2: Final = 0x0020100D
#: TRC_PV_HYPERCALL_V2_ARG_64(i): argument i is present as 64 bits.
_ARG_64: Final = tuple(0x2 << (20 + 2 * i) for i in range(3))
_CYCLES_FLAG: Final = 1 << 31
_EXTRA_SHIFT: Final = 28
_MAX_EXTRA: Final = 7
#: The idle domain's id (Xen's DOMID_IDLE); its VCPU n is CPU n's idle VCPU.
IDLE_DOMAIN: Final = 32767
#: Xen's RUNSTATE_* codes (public/vcpu.h), by the names the trace's metadata gives.
_XEN_RUNSTATES: Final = {"running": 0, "runnable": 1, "blocked": 2, "offline": 3}
_RUNNING, _RUNNABLE = 0, 1
#: 33.333333 MHz: the timebase of JS20/JS21 and Maple, xen970's default machine.
DEFAULT_TIMEBASE_HZ: Final = 33_333_333
#: Where `xen970 export --format xentrace` writes in the run directory by default.
FILE_NAME: Final = "trace.xentrace"
#: Records per CPU window (xentrace writes a per-CPU buffer's worth at a time).
WINDOW_RECORDS: Final = 8192
#: Orders records made from one trace row: the row's own record, then what follows it.
_SUB: Final = 4


class XentraceExportError(ValueError):
    """A run that cannot be written in xentrace's format (say which record and why)."""


@dataclass(frozen=True)
class _Records:
    """Records as columns: when, in which order, on which CPU, event and extra words."""

    t_ns: np.ndarray
    seq: np.ndarray
    cpu: np.ndarray
    event: np.ndarray
    nwords: np.ndarray
    words: np.ndarray  # (n, _MAX_EXTRA) uint32

    @classmethod
    def make(
        cls, t_ns: object, seq: object, cpu: object, event: object, words: list[np.ndarray]
    ) -> _Records:
        t = np.asarray(t_ns, dtype=np.int64)
        n = len(t)
        table = np.zeros((n, _MAX_EXTRA), dtype=np.uint32)
        for i, column in enumerate(words):
            table[:, i] = np.asarray(column, dtype=np.int64).astype(np.uint32)
        return cls(
            t_ns=t,
            seq=np.asarray(seq, dtype=np.int64),
            cpu=np.broadcast_to(np.asarray(cpu, dtype=np.int64), (n,)).copy(),
            event=np.broadcast_to(np.asarray(event, dtype=np.int64), (n,)).astype(np.uint32),
            nwords=np.full(n, len(words), dtype=np.int64),
            words=table,
        )

    @classmethod
    def concat(cls, parts: list[_Records]) -> _Records:
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__annotations__))

    def take(self, order: np.ndarray) -> _Records:
        return _Records(*(getattr(self, f)[order] for f in self.__annotations__))


def _runstate_codes(run: Run) -> np.ndarray:
    """Xen's RUNSTATE_* code of each runstate value the trace names."""
    names = run.trace.xen.metadata.names_of("state")
    unknown = [n for n in names if n not in _XEN_RUNSTATES]
    if unknown:
        raise XentraceExportError(f"runstate {unknown[0]!r} has no Xen RUNSTATE_* code")
    return np.array([_XEN_RUNSTATES[n] for n in names], dtype=np.int64)


def _vcpu_word(dom: object, vcpu: object) -> np.ndarray:
    """`vcpu:16 | dom:16 << 16`, the runstate records' one word."""
    return (np.asarray(dom, dtype=np.int64) << 16) | (np.asarray(vcpu, dtype=np.int64) & 0xFFFF)


def _seq(frame: pd.DataFrame, sub: int = 0) -> np.ndarray:
    """Trace order of a kind frame's rows (its index is the row's place in the trace)."""
    return frame.index.to_numpy(dtype=np.int64) * _SUB + sub


def _vcpu_sched(run: Run, codes: np.ndarray) -> _Records:
    """Runstate changes, wakes and blocks of real VCPUs, each on a CPU."""
    df = run.trace.xen
    rs = df.kind("sched.runstate")
    wake = df.kind("sched.wake")
    block = df.kind("sched.block")
    frames = []
    for frame, event in ((rs, -1), (wake, TRC_SCHED_WAKE), (block, TRC_SCHED_BLOCK)):
        part = frame[["t_ns", "cpu", "dom", "vcpu"]].copy()
        part["event"] = event
        part["new"] = codes[frame["state"].to_numpy()] if event == -1 else -1
        part["old"] = codes[frame["prev_state"].to_numpy()] if event == -1 else -1
        frames.append(part)
    allv = pd.concat(frames).sort_index(kind="stable")
    if (allv["vcpu"] < 0).any() or (allv["dom"] < 0).any():
        raise XentraceExportError("a sched record names no domain or VCPU")
    known = allv["cpu"].astype("float64").where(allv["cpu"] >= 0)
    groups = known.groupby([allv["dom"], allv["vcpu"]], sort=False)
    before, after = groups.ffill(), groups.bfill()
    leaves_cpu = (allv["old"] == _RUNNING).to_numpy()
    guess = np.where(leaves_cpu, before.fillna(after), after.fillna(before))
    cpu = np.where(allv["cpu"] >= 0, allv["cpu"], np.nan_to_num(guess, nan=0.0))
    is_rs = (allv["event"] == -1).to_numpy()
    event = np.where(
        is_rs,
        TRC_SCHED_RUNSTATE_CHANGE | (allv["old"].to_numpy() << 8) | (allv["new"].to_numpy() << 4),
        allv["event"].to_numpy(),
    )
    runstates = _Records.make(
        allv["t_ns"][is_rs],
        _seq(allv)[is_rs],
        cpu[is_rs],
        event[is_rs],
        [_vcpu_word(allv["dom"], allv["vcpu"])[is_rs]],
    )
    actions = _Records.make(
        allv["t_ns"][~is_rs],
        _seq(allv)[~is_rs],
        cpu[~is_rs],
        event[~is_rs],
        [allv["dom"][~is_rs], allv["vcpu"][~is_rs]],
    )
    return _Records.concat([runstates, actions])


def _switches(run: Run) -> _Records:
    """TRC_SCHED_SWITCH records, and the idle VCPU's runstate changes they imply."""
    sw = run.trace.xen.kind("sched.switch")
    cpu = sw["cpu"].to_numpy(dtype=np.int64)
    if (cpu < 0).any():
        raise XentraceExportError("a sched.switch record names no CPU")

    def who(dom: pd.Series, vcpu: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        idle = (dom < 0).to_numpy()
        return (
            np.where(idle, IDLE_DOMAIN, dom.to_numpy(dtype=np.int64)),
            np.where(idle, cpu, vcpu.to_numpy(dtype=np.int64)),
        )

    prev_d, prev_v = who(sw["prev_dom"], sw["prev_vcpu"])
    next_d, next_v = who(sw["dom"], sw["vcpu"])
    switch = _Records.make(
        sw["t_ns"], _seq(sw), cpu, TRC_SCHED_SWITCH, [prev_d, prev_v, next_d, next_v]
    )
    # Leaving idle: its VCPU goes running -> runnable before the next VCPU's running
    # record (which follows the switch); entering idle: runnable -> running after the
    # previous VCPU's record (which precedes it).
    from_idle = (sw["prev_dom"] < 0).to_numpy()
    to_idle = (sw["dom"] < 0).to_numpy()
    leave = TRC_SCHED_RUNSTATE_CHANGE | (_RUNNING << 8) | (_RUNNABLE << 4)
    enter = TRC_SCHED_RUNSTATE_CHANGE | (_RUNNABLE << 8) | (_RUNNING << 4)
    idle_word = _vcpu_word(IDLE_DOMAIN, cpu)
    idle = _Records.make(
        sw["t_ns"][from_idle | to_idle],
        _seq(sw, 1)[from_idle | to_idle],
        cpu[from_idle | to_idle],
        np.where(from_idle, leave, enter)[from_idle | to_idle],
        [idle_word[from_idle | to_idle]],
    )
    return _Records.concat([switch, idle])


def _hypercalls(run: Run) -> _Records:
    """TRC_PV_HYPERCALL_V2 for each Xen hypercall (named, not a PAPR `H_*` call)."""
    calls = run.trace.xen.kind("hcall.enter")
    names = calls["text"].astype(object)
    xen = (names.notna() & ~names.fillna("").str.startswith("H_") & (calls["cpu"] >= 0)).to_numpy()
    calls = calls[xen]
    words: list[np.ndarray] = [calls["nr"].to_numpy(dtype=np.int64) | sum(_ARG_64)]
    for arg in ("arg0", "arg1", "arg2"):
        value = calls[arg].to_numpy(dtype=np.int64).view(np.uint64)
        words += [(value & 0xFFFFFFFF).astype(np.int64), (value >> 32).astype(np.int64)]
    return _Records.make(calls["t_ns"], _seq(calls), calls["cpu"], TRC_PV_HYPERCALL_V2, words)


def _continue_running(records: _Records, end_ns: int) -> _Records:
    """TRC_SCHED_CONTINUE_RUNNING at end_ns for each VCPU whose last runstate is running."""
    is_rs = (records.event & 0xFFFFF00F) == TRC_SCHED_RUNSTATE_CHANGE
    last = pd.DataFrame(
        {
            "word": records.words[is_rs, 0],
            "new": (records.event[is_rs] >> 4) & 0xF,
            "cpu": records.cpu[is_rs],
        }
    ).drop_duplicates("word", keep="last")
    running = last[last["new"] == _RUNNING].sort_values(["cpu", "word"])
    n = len(running)
    return _Records.make(
        np.full(n, end_ns),
        np.full(n, np.iinfo(np.int64).max),
        running["cpu"],
        TRC_SCHED_CONTINUE_RUNNING,
        [running["word"]],
    )


def _cycles(t_ns: np.ndarray, cpu: np.ndarray) -> np.ndarray:
    """Timebase ticks of each record (given in trace order, `t_ns` already in ticks'
    units as floats): never falling, at least 1, and one tick up wherever the CPU
    changes between two records of the same tick."""
    base = np.rint(t_ns).astype(np.int64)
    moves = np.concatenate([[0], np.cumsum(cpu[1:] != cpu[:-1])]).astype(np.int64)
    # cycles[i] = max(base[i], cycles[i-1] + moved[i]), cycles[-1] = 0, without a loop.
    return np.maximum.accumulate(np.maximum(base - moves, 1)) + moves


def _pack(records: _Records, cycles: np.ndarray) -> bytes:
    """The records' bytes: header, tsc_lo, tsc_hi and their extra words each."""
    n = len(cycles)
    table = np.zeros((n, 3 + _MAX_EXTRA), dtype="<u4")
    table[:, 0] = records.event | (records.nwords << _EXTRA_SHIFT).astype(np.uint32) | _CYCLES_FLAG
    table[:, 1] = (cycles & 0xFFFFFFFF).astype(np.uint32)
    table[:, 2] = (cycles >> 32).astype(np.uint32)
    table[:, 3:] = records.words
    keep = np.arange(3 + _MAX_EXTRA) < (3 + records.nwords)[:, None]
    return bytes(table[keep].tobytes())


def _cpu_change(cpu: int, size: int) -> bytes:
    header = TRC_TRACE_CPU_CHANGE | (2 << _EXTRA_SHIFT)
    return np.array([header, cpu, size], dtype="<u4").tobytes()


def _records(run: Run) -> _Records:
    """Every exported record, in trace order."""
    codes = _runstate_codes(run)
    body = _Records.concat([_vcpu_sched(run, codes), _switches(run), _hypercalls(run)])
    body = body.take(np.lexsort((body.seq, body.t_ns)))
    if len(body.t_ns) and int(body.t_ns[-1]) > run.sim_ns:
        raise XentraceExportError(f"a record at {body.t_ns[-1]} ns is past the run's end")
    return _Records.concat([body, _continue_running(body, run.sim_ns)])


def _windows(run: Run, timebase_hz: int) -> list[tuple[int, int, bytes]]:
    """(first cycles, cpu, bytes) of each CPU window, in file order."""
    records = _records(run)
    cycles = _cycles(records.t_ns * (timebase_hz / 1e9), records.cpu)
    windows: list[tuple[int, int, int, bytes]] = []
    for cpu in np.unique(records.cpu):
        mine = np.flatnonzero(records.cpu == cpu)
        for n, start in enumerate(range(0, len(mine), WINDOW_RECORDS)):
            part = mine[start : start + WINDOW_RECORDS]
            body = _pack(records.take(part), cycles[part])
            windows.append((min(n, 1), int(cycles[part[0]]), int(cpu), body))
    windows.sort(key=lambda w: w[:3])
    return [(first, cpu, body) for _, first, cpu, body in windows]


def run_timebase_hz(run: Run) -> int:
    """The run's machine timebase, from run.json's `machine`; `DEFAULT_TIMEBASE_HZ` for a
    run recorded before run.json said it."""
    machine = run.meta.get("machine") or {}
    return int(machine.get("timebase_hz") or DEFAULT_TIMEBASE_HZ)


def write_xentrace(run: Run, out: BinaryIO, timebase_hz: int | None = None) -> int:
    """Write `run` to the open binary file `out` in xentrace's format; the bytes written.
    The cycle counter ticks at `timebase_hz` (default: the run's own timebase)."""
    if timebase_hz is None:
        timebase_hz = run_timebase_hz(run)
    if timebase_hz <= 0:
        raise XentraceExportError(f"timebase {timebase_hz} Hz: must be above 0")
    written = 0
    for _, cpu, body in _windows(run, timebase_hz):
        written += out.write(_cpu_change(cpu, len(body)))
        written += out.write(body)
    return written
