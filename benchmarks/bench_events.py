"""Interdomain event channel ping-pong: round trips per wall second.

Why: event channels carry every split driver's traffic, and each round trip crosses the
whole stack (hypercall, Xen's pending bits, IPI, upcall in real mode, rfid), so this is
the simulator's per-event overhead. Target: >= 10,000 round trips per wall second.

The scenario runs for a fixed simulated span (`run()` always runs to the duration) chosen
so the rounds finish well before the end; nothing is subtracted from the wall time.
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

NAME = "events"
TARGET = 10_000.0
ROUNDS = 20_000
QUICK_ROUNDS = 500
# A round trip takes ~2.5-6 us simulated (each side's wake pays Xen's schedule and context
# switch, ~2.1 us, before its first instruction); building takes a few ms before the first.
BASE_NS = 10_000_000
PER_ROUND_NS = 4_000


def scenario_text(rounds: int, duration_ns: int) -> str:
    """2 CPUs, dom0, guest2 pinging guest3 `rounds` times."""
    return f"""\
name: bench-events
duration: {duration_ns}ns
machine:
  cpus: 2
domains:
  - name: guest2
    memory: 64MiB
    workloads:
      - kind: pingpong
        peer: guest3
        role: ping
        rounds: {rounds}
  - name: guest3
    memory: 64MiB
    workloads:
      - kind: pingpong
        peer: guest2
        role: pong
"""


def rounds_done(sim: Simulation) -> tuple[int, int, int]:
    """(last completed round, sim ns of the first round, sim ns of the last round)."""
    mark = K.GUEST_MARK
    last = first_ns = last_ns = 0
    for r in sim.rec.records:
        if r[0] == mark and r[9] == "pingpong.round":
            if r[5] == 1:
                first_ns = r[1]
            if r[5] > last:
                last, last_ns = r[5], r[1]
    return last, first_ns, last_ns


def measure(quick: bool) -> BenchResult:
    """Run all rounds once and divide by the wall time of `run()`."""
    rounds = QUICK_ROUNDS if quick else ROUNDS
    duration_ns = BASE_NS + rounds * PER_ROUND_NS
    sim = Simulation(scenario(scenario_text(rounds, duration_ns), NAME), record=True)
    settle()
    run = timed_run(sim)
    done, first_ns, last_ns = rounds_done(sim)
    if done != rounds:
        raise BenchmarkError(
            f"only {done} of {rounds} round trips completed in "
            f"{duration_ns / 1e6:.1f} ms simulated; build errors: "
            f"{sim.build_errors}"
        )
    sends = sim.rec.counts().get("evtchn.send", 0)
    per_round_us = (last_ns - first_ns) / max(rounds - 1, 1) / 1000
    simulated_text = (
        f"{rounds:,} round trips on 2 CPUs; run() of "
        f"{duration_ns / 1e6:.1f} ms simulated took {run.wall_s:.2f} s"
    )
    done_text = (
        f"last round completed at {last_ns / 1e6:.3f} ms simulated "
        f"(first at {first_ns / 1e6:.3f} ms, {per_round_us:.2f} us simulated "
        f"per round trip); {sends:,} evtchn.send records"
    )
    return BenchResult(
        name=NAME,
        figure=rounds / run.wall_s,
        unit="round trips / wall s",
        target=TARGET,
        baseline="wall time of run() (includes building both guests)",
        details=[
            ("simulated", simulated_text),
            ("work done", done_text),
            ("wall per round trip", f"{run.wall_s / rounds * 1e6:.0f} us"),
            ("trace records", f"{len(sim.rec):,} ({fmt(len(sim.rec) / rounds)} per round trip)"),
        ],
    )


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main((__doc__ or NAME).splitlines()[0], measure, argv)


if __name__ == "__main__":
    sys.exit(main())
