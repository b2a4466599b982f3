"""Virtual block I/O: wall microseconds per simulated block request.

Why: a storage study runs thousands of requests through blkfront, the blkif ring, grant
maps, blkback, the IOMMU and the disk model; each request crosses the whole split-driver
stack twice, so this is the simulator's per-request overhead. Target: <= 200 wall us per
completed request for one guest doing random 4 KiB reads and writes (50% reads) at queue
depth 8 on a 64 MiB vbd, every read verified, with the scenario schema's default disk
(100 us latency, 100 MB/s, one request served at a time).

The scenario runs for a fixed simulated span (`run()` always runs to the duration) chosen
so the requests finish well before the end; nothing is subtracted from the headline wall
time. A second figure leaves out the boot: wall time between two progress steps inside the
I/O phase, over the requests completed between them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from benchmarks._common import (
    BenchmarkError,
    BenchResult,
    TimedRun,
    bench_main,
    fmt,
    scenario,
    settle,
    timed_run,
    window_wall_per_item,
)
from framework.simulation import Simulation
from framework.trace.ids import K

NAME = "blk"
TARGET = 200.0
REQUESTS = 3_000
QUICK_REQUESTS = 300
QUEUE_DEPTH = 8
# The default disk serves one request at a time: 100 us + 4 KiB at 100 MB/s = ~141 us
# each. Booting dom0 and the guest and connecting the vbd take a few ms before the first.
BASE_NS = 20_000_000
PER_REQUEST_NS = 250_000


def scenario_text(requests: int, duration_ns: int) -> str:
    """dom0 serving one 64 MiB vbd (a sparse temporary image) to a guest running blockio."""
    return f"""\
name: bench-blk
duration: {duration_ns}ns
machine:
  cpus: 2
  memory: 1GiB
  disk: {{latency: 100us, bandwidth: 100MB/s, queue_depth: 32}}
dom0:
  memory: 256MiB
domains:
  - name: guest1
    memory: 64MiB
    devices:
      - {{kind: vbd, name: xvda, size: 64MiB, mode: w}}
    workloads:
      - kind: blockio
        device: xvda
        pattern: rand
        read_percent: 50
        block_size: 4KiB
        queue_depth: {QUEUE_DEPTH}
        requests: {requests}
        verify: true
"""


def measure(quick: bool) -> BenchResult:
    """Run all requests once and divide the wall time of `run()` by those completed."""
    requests = QUICK_REQUESTS if quick else REQUESTS
    duration_ns = BASE_NS + requests * PER_REQUEST_NS
    sim = Simulation(scenario(scenario_text(requests, duration_ns), NAME), record=True)
    try:
        settle()
        run = timed_run(sim)
        return _result(sim, run, requests, duration_ns)
    finally:
        sim.close()


def _result(sim: Simulation, run: TimedRun, requests: int, duration_ns: int) -> BenchResult:
    """Check the work was done and correct, then build the figures from the trace."""
    submit_ns: list[int] = []
    done_ns: list[int] = []
    errors = verify = 0
    first_error = ""
    for r in sim.rec.records:
        kind = r[0]
        if kind == K.BLK_SUBMIT:
            submit_ns.append(r[1])
        elif kind == K.BLK_COMPLETE:
            if r[7] == 0:  # BLKIF_RSP_OKAY
                done_ns.append(r[1])
            else:
                errors += 1
                first_error = first_error or f"request {r[6]} ({r[9]}) status {r[7]}"
        elif kind == K.BLK_VERIFY:
            verify += 1
    done = len(done_ns)
    if verify:
        raise BenchmarkError(f"{verify} blk.verify records: reads returned wrong data")
    if errors:
        raise BenchmarkError(f"{errors} block requests failed, first: {first_error}")
    if done < requests:
        raise BenchmarkError(
            f"only {done} of {requests} block requests completed in "
            f"{duration_ns / 1e6:.1f} ms simulated; build errors: {sim.build_errors}"
        )
    first_ns, last_ns = submit_ns[0], done_ns[-1]
    io_s = (last_ns - first_ns) / 1e9
    counts = sim.rec.counts()
    hcalls = counts.get("hcall.enter", 0)
    sends = counts.get("evtchn.send", 0)
    upcalls = counts.get("evtchn.upcall", 0)
    steady = window_wall_per_item(run, first_ns, done_ns)
    if steady is None:
        steady_text = "n/a (the I/O spans fewer than two progress steps)"
    else:
        per, items, t0, t1 = steady
        steady_text = (
            f"{per * 1e6:.0f} us ({items:,} requests completed between "
            f"{t0 / 1e6:.1f} and {t1 / 1e6:.1f} ms simulated)"
        )
    simulated_text = (
        f"{requests:,} random 4 KiB requests (50% reads, verified) at queue depth "
        f"{QUEUE_DEPTH} on a 64 MiB vbd; run() of {duration_ns / 1e6:.1f} ms simulated "
        f"took {run.wall_s:.2f} s"
    )
    done_text = (
        f"{done:,} completed OK from {first_ns / 1e6:.3f} to {last_ns / 1e6:.3f} ms "
        f"simulated: {fmt(done / io_s)} IOPS simulated; 0 errors, 0 verify failures"
    )
    per_request_text = (
        f"{fmt(hcalls / done)} hypercalls, {fmt(sends / done)} evtchn.send, "
        f"{fmt(upcalls / done)} upcalls, {fmt(len(sim.rec) / done)} trace records"
    )
    return BenchResult(
        name=NAME,
        figure=run.wall_s / done * 1e6,
        unit="wall us / block request",
        target=TARGET,
        higher_is_better=False,
        baseline="wall time of run() (includes booting the guest)",
        details=[
            ("simulated", simulated_text),
            ("work done", done_text),
            ("wall per request", f"{run.wall_s / done * 1e6:.0f} us"),
            ("wall per request, boot excluded", steady_text),
            ("per request", per_request_text),
        ],
    )


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main((__doc__ or NAME).splitlines()[0], measure, argv)


if __name__ == "__main__":
    sys.exit(main())
