"""The regression suite on Dask against the same scenarios one after another in one process.

Why: `xen970 test` runs suites on Dask so they scale past one machine; on one machine the
engine must cost next to nothing beyond the parallel speed-up.
Figures: T_seq, every scenario judged by `run_job` in this process one after another;
T_dask, from submitting the same jobs to the last result on a local cluster of W workers
that already built a guest (cluster start-up and warm-up are reported apart: they are paid
once per suite, not per scenario); and the time each job took inside its worker.  Two
processes running at once on this 2-core machine each run slower than one alone (shared
caches and memory bandwidth), which is the parallel speed-up the hardware allows, not the
engine's doing, so the headline is Dask's own overhead: T_dask / T_ideal - 1 with
T_ideal = max(sum of the in-worker job times / W, the longest job).  The overhead against
T_seq / W is printed too.  Target: Dask's overhead <= 5%.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks._common import BenchResult, bench_main
from framework.suite.collect import collect
from framework.suite.engine import Engine
from framework.suite.job import Job, JobResult, run_job

NAME = "suite"
#: A job that builds and boots a guest in each worker (what the sequential run paid for once).
_WARM = "name: warm\nduration: 5ms\ndomains: [{name: g, memory: 64MiB}]\n"
TARGET = 0.05
SUITE = Path(__file__).resolve().parents[1] / "scenarios" / "xm-test"
#: The groups the quick run takes (a few seconds of scenarios).
QUICK_GROUPS = ("events", "console")


def _jobs(quick: bool) -> list[Job]:
    tests = collect([str(SUITE)])
    if quick:
        tests = [t for t in tests if t.group in QUICK_GROUPS] or tests[:4]
    return [
        Job(t.test_id, str(t.path), t.path.read_text(), str(t.path.parent.resolve()), 600.0)
        for t in tests
    ]


def _lost(job: Job, exc: BaseException) -> JobResult:
    raise RuntimeError(f"{job.test_id}: {exc}") from exc


def measure(quick: bool) -> BenchResult:
    """Sequential in-process time, then the same jobs on a warm local cluster."""
    jobs = _jobs(quick)
    workers = os.cpu_count() or 1
    seq: dict[str, float] = {}
    verdicts_seq: dict[str, str] = {}
    t0 = time.perf_counter()
    for job in jobs:
        t = time.perf_counter()
        verdicts_seq[job.test_id] = run_job(job).verdict
        seq[job.test_id] = time.perf_counter() - t
    t_seq = time.perf_counter() - t0
    t_start = time.perf_counter()
    with Engine(None, workers) as engine:
        started = time.perf_counter() - t_start
        warm = [
            Job(f"warm{i}", "warm", "name: warm\nduration: 1ms\n", ".", 60.0)
            for i in range(workers)
        ]
        t = time.perf_counter()
        list(engine.run(run_job, warm, _lost))
        warmed = time.perf_counter() - t
        t = time.perf_counter()
        results = {jobs[i].test_id: r for i, r in engine.run(run_job, jobs, _lost)}
        t_dask = time.perf_counter() - t
    verdicts_dask = {k: r.verdict for k, r in results.items()}
    in_workers = sum(r.wall_s for r in results.values())
    longest = max((r.wall_s for r in results.values()), default=0.0)
    ideal = max(in_workers / workers, longest)
    overhead = t_dask / ideal - 1 if ideal > 0 else 0.0
    naive = max(t_seq / workers, max(seq.values(), default=0.0))
    same = verdicts_seq == verdicts_dask
    return BenchResult(
        name=NAME,
        figure=overhead,
        unit="overhead",
        target=TARGET,
        higher_is_better=False,
        baseline=f"the same {len(jobs)} jobs' own time in the workers, spread over them",
        details=[
            ("scenarios", str(len(jobs))),
            ("workers", str(workers)),
            ("sequential, one process", f"{t_seq:.2f} s"),
            ("jobs' own time inside the workers", f"{in_workers:.2f} s"),
            ("ideal with the workers", f"{ideal:.2f} s"),
            ("on Dask (warm cluster)", f"{t_dask:.2f} s"),
            (
                "Dask's overhead per scenario",
                f"{(t_dask - ideal) / max(len(jobs), 1) * 1e3:.1f} ms",
            ),
            ("against sequential / workers", f"{naive:.2f} s: {t_dask / naive - 1:+.1%}"),
            ("cluster start-up", f"{started:.2f} s"),
            ("worker warm-up (first import)", f"{warmed:.2f} s"),
            ("suite wall time with start-up", f"{started + warmed + t_dask:.2f} s"),
            ("same verdicts both ways", "yes" if same else "NO"),
        ],
    )


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(NAME, measure, argv)


if __name__ == "__main__":
    sys.exit(main())
