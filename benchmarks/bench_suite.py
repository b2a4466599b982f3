"""The regression suite on Dask against the same scenarios one after another in one process.

Why: `xen970 test` runs suites on Dask so they scale past one machine; on one machine the
engine must cost next to nothing beyond the parallel speed-up.
Figure: overhead = T_dask / T_ideal - 1, where T_seq is the sequential time (every
scenario judged by `run_job` in this process, one after another) and T_ideal the best any
scheduler could do with W workers: max(T_seq / W, the longest scenario).  T_dask is from
submitting the jobs to the last result, on a local cluster of W workers that already
imported the simulator (cluster start-up and worker warm-up are reported apart: they are
paid once per suite, not per scenario).  Target: overhead <= 5%.
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
        verdicts_dask = {jobs[i].test_id: r.verdict for i, r in engine.run(run_job, jobs, _lost)}
        t_dask = time.perf_counter() - t
    ideal = max(t_seq / workers, max(seq.values(), default=0.0))
    overhead = t_dask / ideal - 1 if ideal > 0 else 0.0
    same = verdicts_seq == verdicts_dask
    return BenchResult(
        name=NAME,
        figure=overhead,
        unit="overhead",
        target=TARGET,
        higher_is_better=False,
        baseline=f"the same {len(jobs)} scenarios one after another in one process",
        details=[
            ("scenarios", str(len(jobs))),
            ("workers", str(workers)),
            ("sequential, one process", f"{t_seq:.2f} s"),
            ("ideal with the workers", f"{ideal:.2f} s"),
            ("on Dask (warm cluster)", f"{t_dask:.2f} s"),
            ("overhead per scenario", f"{(t_dask - ideal) / max(len(jobs), 1) * 1e3:.0f} ms"),
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
