"""Loading a trace: bytes per record in pandas, and load time, for ping-pong traces of
growing length.

Why: analysing traces in pandas is half of what xen970 is for, and a trace must load in
memory that grows with what is asked for. Target: the whole trace at <= 64 bytes per record
in memory (trace format 2 took ~480). Also reported, per trace length: the load time, the
scheduling records alone (`kinds=["sched.*"]`), the peak memory of a process doing only
the load, and the extrapolation to a 10-simulated-second run (acceptance: its scheduling
records in under 1 GiB).

The figures per record stay flat as the trace grows (the columns are fixed-width), which
the rows for each length show; the extrapolation multiplies them by the records a 10 s run
makes at the measured rate.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import analysis  # noqa: F401  (registers DataFrame.xen)
from analysis.run import read_trace
from benchmarks._common import BenchmarkError, BenchResult, bench_main, scenario, settle
from framework.simulation import Simulation

NAME = "trace_load"
TARGET = 64.0
DURATIONS_NS = (100_000_000, 300_000_000)
QUICK_DURATIONS_NS = (2_000_000, 5_000_000)
TEN_SECONDS_NS = 10_000_000_000
SCHED = "sched.*"
_MIB = 1 << 20
ROOT = Path(__file__).resolve().parents[1]

# Run in a fresh interpreter: the peak resident memory a load adds to a process that has
# only imported analysis (the frame and every temporary, Arrow's included).
_LOADER = """
import json, sys, time
from analysis.run import read_trace
def status(key):  # VmRSS now, VmHWM the peak of this program (ru_maxrss is not: a child
    with open("/proc/self/status") as f:  # started by fork+exec inherits its parent's)
        line = next(l for l in f if l.startswith(key + ":"))
    return int(line.split()[1]) * 1024
before = status("VmRSS")
kinds = json.loads(sys.argv[2])
t0 = time.perf_counter()
df = read_trace(sys.argv[1], kinds=kinds)
wall = time.perf_counter() - t0
print(json.dumps({"rows": len(df), "bytes": int(df.memory_usage(deep=True).sum()),
                  "load_s": wall, "peak": status("VmHWM") - before}))
"""


def scenario_text(duration_ns: int) -> str:
    """2 CPUs; guest2 and guest3 bounce an event back and forth for the whole run."""
    return f"""\
name: bench-trace-load
duration: {duration_ns}ns
machine:
  cpus: 2
domains:
  - name: guest2
    memory: 64MiB
    workloads: [{{kind: pingpong, peer: guest3, role: ping}}]
  - name: guest3
    memory: 64MiB
    workloads: [{{kind: pingpong, peer: guest2, role: pong}}]
"""


@dataclass
class Load:
    """One read of a trace: rows, bytes of the DataFrame, seconds, peak added memory."""

    rows: int
    bytes: int
    load_s: float
    peak: int | None

    @property
    def per_row(self) -> float:
        return self.bytes / max(self.rows, 1)


def load(path: Path, kinds: list[str] | None, in_process: bool) -> Load:
    """Read the trace (all of it, or `kinds`) and measure the frame."""
    if in_process:
        settle()
        t0 = time.perf_counter()
        df = read_trace(path, kinds=kinds)
        wall = time.perf_counter() - t0
        return Load(len(df), int(df.memory_usage(deep=True).sum()), wall, None)
    done = subprocess.run(
        [sys.executable, "-c", _LOADER, str(path), json.dumps(kinds)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BenchmarkError(f"loading {path} failed: {done.stderr.strip()[-500:]}")
    got = json.loads(done.stdout)
    return Load(got["rows"], got["bytes"], got["load_s"], got["peak"])


def record(duration_ns: int, out: Path) -> tuple[Path, float]:
    """Simulate ping-pong for `duration_ns` and write its trace; (file, wall s of write)."""
    sim = Simulation(scenario(scenario_text(duration_ns), NAME), record=True)
    settle()
    sim.run()
    t0 = time.perf_counter()
    path = sim.rec.write(out)
    wall = time.perf_counter() - t0
    sim.close()
    return path, wall


def _mib(n: float) -> str:
    return f"{n / _MIB:,.1f} MiB"


def measure(quick: bool) -> BenchResult:
    """Record ping-pong traces of each length, load each whole and its scheduling records."""
    durations = QUICK_DURATIONS_NS if quick else DURATIONS_NS
    details: list[tuple[str, str]] = []
    whole = sched = first = None
    wide_per_row = 0.0
    with tempfile.TemporaryDirectory(prefix="xen970-bench-trace-load-") as tmp:
        for duration_ns in durations:
            path, write_s = record(duration_ns, Path(tmp) / str(duration_ns))
            whole = load(path, None, quick)
            first = sched
            sched = load(path, [SCHED], quick)
            if whole.rows == 0 or sched.rows == 0:
                raise BenchmarkError(f"the {duration_ns} ns run recorded no (scheduling) records")
            if duration_ns == durations[0]:
                wide = read_trace(path).xen.wide()
                wide_per_row = wide.memory_usage(deep=True).sum() / len(wide)
                del wide
            peaks = (
                ""
                if whole.peak is None or sched.peak is None
                else f"; peak added memory {_mib(whole.peak)} / {_mib(sched.peak)}"
            )
            line = (
                f"{whole.rows:,} records, file {_mib(path.stat().st_size)}, written in "
                f"{write_s:.2f} s; whole trace {whole.per_row:.1f} B/record "
                f"({_mib(whole.bytes)}) loaded in {whole.load_s:.2f} s "
                f"({whole.load_s / whole.rows * 1e6:.2f} s per million); {SCHED} "
                f"{sched.rows:,} records, {sched.per_row:.1f} B/record "
                f"({_mib(sched.bytes)}) in {sched.load_s:.2f} s{peaks}"
            )
            details.append((f"{duration_ns / 1e6:g} ms simulated", line))
        assert whole is not None and sched is not None and first is not None
        longest = durations[-1]
        per_s = whole.rows / (longest / 1e9)
        scale = TEN_SECONDS_NS / longest
        peak = ""
        if sched.peak is not None and first.peak is not None:
            # What one more scheduling record adds to the peak (between the two lengths:
            # the fixed cost of a load, imports and buffers, left out), times 10 s of them.
            slope = (sched.peak - first.peak) / max(sched.rows - first.rows, 1)
            ten_s = sched.peak + slope * (sched.rows * scale - sched.rows)
            peak = f", peak added memory loading {SCHED} {_mib(ten_s)}"
        ten = (
            f"{per_s * 10:,.0f} records: whole trace {_mib(whole.bytes * scale)}, "
            f"{SCHED} {_mib(sched.bytes * scale)} (target < 1,024 MiB){peak}"
        )
        details.append(("10 s simulated, extrapolated", ten))
        details.append(
            (
                "the shortest trace in the format-2 (wide) layout, df.xen.wide()",
                f"{wide_per_row:.0f} B/record",
            )
        )
    return BenchResult(
        name=NAME,
        figure=whole.per_row,
        unit="bytes / record in pandas",
        target=TARGET,
        higher_is_better=False,
        baseline=f"whole trace of {longest / 1e6:g} ms of ping-pong, read_trace()",
        details=details,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main((__doc__ or NAME).splitlines()[0], measure, argv)


if __name__ == "__main__":
    sys.exit(main())
