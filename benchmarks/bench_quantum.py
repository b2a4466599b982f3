"""The synchronisation quantum's price: compute-bound and event-bound speed at the
default `machine.sync_quantum` against 500 us (the old fixed bound).

Why: a short quantum makes what one busy CPU posts to another take effect within
microseconds (ping-pong across two loaded CPUs), but it cuts busy CPUs' slices into more
pieces, and every slice costs Python and SimPy work. The figure is the compute-bound
speed at the default quantum as a fraction of its speed at 500 us, both measured in this
run. Target: >= 0.9 (the default loses at most 10%).

Compute-bound: two compute guests, each pinned to one of 2 CPUs (both CPUs busy all the
time, the case the quantum shortens), in emulated instructions per wall second over the
second half of the run. Event-bound: ping-pong between two guests pinned to the two
CPUs, each CPU also running a compute guest; round trips per wall second and the
simulated round trip's median.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Sequence
from itertools import pairwise

from benchmarks._common import BenchmarkError, BenchResult, bench_main, scenario, settle, timed_run
from framework.hw970 import params
from framework.simulation import Simulation
from framework.trace.ids import K

NAME = "quantum"
TARGET = 0.9
OLD_QUANTUM_NS = 500_000


def compute_text(quantum_ns: int, duration: str) -> str:
    """2 CPUs, each running one pinned compute guest."""
    guests = "".join(
        f"""\
  - name: busy{c}
    memory: 64MiB
    affinity: [{c}]
    workloads: [{{kind: compute}}]
"""
        for c in (0, 1)
    )
    return f"""\
name: bench-quantum-compute
duration: {duration}
machine: {{cpus: 2, sync_quantum: {quantum_ns}ns}}
domains:
{guests}"""


def pingpong_text(quantum_ns: int, duration: str) -> str:
    """Ping on CPU 0, pong on CPU 1, and a compute guest on each CPU."""
    return (
        compute_text(quantum_ns, duration).replace(
            "bench-quantum-compute", "bench-quantum-pingpong"
        )
        + """\
  - name: ping
    memory: 64MiB
    affinity: [0]
    workloads: [{kind: pingpong, peer: pong, role: ping}]
  - name: pong
    memory: 64MiB
    affinity: [1]
    workloads: [{kind: pingpong, peer: ping, role: pong}]
"""
    )


def compute_speed(quantum_ns: int, duration: str) -> float:
    """Emulated instructions per wall second over the run's second half."""
    sim = Simulation(scenario(compute_text(quantum_ns, duration), NAME), record=False)
    settle()
    marks: list[tuple[float, int]] = []

    def guest_time() -> int:
        return sum(v.cpu_time_ns for d in sim.xen.domains.values() if d.domid for v in d.vcpus)

    run = timed_run(sim, on_step=lambda _t: marks.append((0.0, guest_time())))
    walls = [w for _t, w in run.steps]
    half = len(walls) // 2 - 1
    ns = marks[-1][1] - marks[half][1]
    if ns <= 0:
        raise BenchmarkError("the compute guests did not run")
    return ns * sim.scenario.machine.clock / 1e9 / (walls[-1] - walls[half])


def pingpong(quantum_ns: int, duration: str) -> tuple[float, float]:
    """(round trips per wall second, median simulated round trip in us)."""
    sim = Simulation(scenario(pingpong_text(quantum_ns, duration), NAME), record=True)
    settle()
    run = timed_run(sim)
    mark = K.GUEST_MARK
    t = [r[1] for r in sim.rec.records if r[0] == mark and r[9] == "pingpong.round"]
    if len(t) < 3:
        raise BenchmarkError(f"only {len(t)} ping-pong rounds at quantum {quantum_ns} ns")
    rtt = statistics.median(b - a for a, b in pairwise(t))
    return len(t) / run.wall_s, rtt / 1000


def measure(quick: bool) -> BenchResult:
    """Both workloads at the default quantum and at 500 us, alternated."""
    q = params.SYNC_QUANTUM_NS
    dur_c, dur_p = ("20ms", "45ms") if quick else ("1s", "200ms")
    fast_old = compute_speed(OLD_QUANTUM_NS, dur_c)
    fast_new = compute_speed(q, dur_c)
    rate_old, rtt_old = pingpong(OLD_QUANTUM_NS, dur_p)
    rate_new, rtt_new = pingpong(q, dur_p)
    return BenchResult(
        name=NAME,
        figure=fast_new / fast_old,
        unit=f"x compute speed at {q / 1000:g} us vs 500 us",
        target=TARGET,
        baseline="the same compute-bound run at sync_quantum 500us, in this process",
        details=[
            (
                "compute-bound",
                (
                    f"{fast_new / 1e6:,.0f} M instr/s at {q / 1000:g} us, "
                    f"{fast_old / 1e6:,.0f} at 500 us"
                ),
            ),
            (
                "ping-pong, 2 loaded CPUs",
                (
                    f"round trip p50 {rtt_new:.1f} us simulated at {q / 1000:g} us "
                    f"({rate_new:,.0f} round trips / wall s); {rtt_old:.1f} us at 500 us "
                    f"({rate_old:,.0f} / wall s)"
                ),
            ),
        ],
    )


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main((__doc__ or NAME).splitlines()[0], measure, argv)


if __name__ == "__main__":
    sys.exit(main())
