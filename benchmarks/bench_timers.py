"""Many timer-driven VCPUs: simulated seconds per wall second.

Why: most VCPUs on a real box are idle, woken by their 100 Hz tick; a study of scheduling
needs long simulated spans of that, so the simulator must run far ahead of wall time.
Target: >= 10 simulated seconds per wall second for dom0 + 8 guests x 4 VCPUs on 4 CPUs.
The number of ticks the guests handled is reported to show the work was done.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from benchmarks._common import (
    BenchmarkError,
    BenchResult,
    bench_main,
    fmt,
    scenario,
    settle,
    timed_run,
)
from framework.simulation import Simulation
from framework.trace.ids import K

NAME = "timers"
TARGET = 10.0
GUESTS = 8
VCPUS = 4
HZ = 100


def scenario_text(duration: str) -> str:
    """dom0 (one VCPU per CPU) and 8 guests whose 4 VCPUs each take 100 Hz ticks."""
    guests = ""
    for i in range(1, GUESTS + 1):
        guests += f"  - name: guest{i}\n    memory: 64MiB\n    vcpus: {VCPUS}\n    workloads:\n"
        for v in range(VCPUS):
            guests += f"      - kind: timer\n        hz: {HZ}\n        vcpu: {v}\n"
    return f"""\
name: bench-timers
duration: {duration}
machine:
  cpus: 4
  memory: 2GiB
domains:
{guests}"""


def ticks_handled(sim: Simulation) -> int:
    """Ticks the guests' timer handlers ran (`guest.mark` records labelled timer.tick)."""
    mark = K.GUEST_MARK
    return sum(1 for r in sim.rec.records if r[0] == mark and r[9] == "timer.tick")


def measure(quick: bool) -> BenchResult:
    """Run the scenario once and time `run()`."""
    duration_ns = 100_000_000 if quick else 2_000_000_000
    duration = f"{duration_ns // 1_000_000}ms"
    sim = Simulation(scenario(scenario_text(duration), NAME), record=True)
    settle()
    run = timed_run(sim)
    ticks = ticks_handled(sim)
    if ticks == 0:
        raise BenchmarkError(f"no timer tick was handled; build errors: {sim.build_errors}")
    expected = GUESTS * VCPUS * HZ * duration_ns // 1_000_000_000
    counts = sim.rec.counts()
    ratio = duration_ns / 1e9 / run.wall_s
    simulated_text = (
        f"{duration} of dom0 + {GUESTS} guests x {VCPUS} VCPUs at {HZ} Hz "
        f"on 4 CPUs in {run.wall_s:.2f} s of run()"
    )
    ticks_text = (
        f"{ticks:,} guest timer.tick marks (at most {expected:,} due; the first "
        f"tick of each VCPU is 10 ms after it starts); "
        f"{counts.get('timer.fire', 0):,} timer.fire records"
    )
    steady_text = f"{fmt(run.second_half_rate())} sim s / wall s (guests already built)"
    return BenchResult(
        name=NAME,
        figure=ratio,
        unit="sim s / wall s",
        target=TARGET,
        baseline="wall time of run() (includes building the 8 guests)",
        details=[
            ("simulated", simulated_text),
            ("ticks handled", ticks_text),
            ("wall per tick", f"{run.wall_s / ticks * 1e6:.0f} us"),
            ("2nd half of run()", steady_text),
            ("trace records", f"{len(sim.rec):,}"),
        ],
    )


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main((__doc__ or NAME).splitlines()[0], measure, argv)


if __name__ == "__main__":
    sys.exit(main())
