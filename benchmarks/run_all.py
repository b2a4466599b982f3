"""Run every benchmark in one process and print one table: figure, target, pass/fail.

One process so that all figures come from the same machine state; each benchmark still
compares against a reference measured inside its own run. Exit status: 0 when every
target is met, 1 otherwise (a benchmark that raised counts as missed).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence

from rich.console import Console

from benchmarks import (
    bench_blk,
    bench_compute,
    bench_events,
    bench_net,
    bench_quantum,
    bench_timers,
    bench_trace,
    bench_trace_load,
)
from benchmarks._common import BenchResult, parse_args, print_results, write_json

BENCHMARKS: dict[str, Callable[[bool], BenchResult]] = {
    bench_compute.NAME: bench_compute.measure,
    bench_timers.NAME: bench_timers.measure,
    bench_events.NAME: bench_events.measure,
    bench_trace.NAME: bench_trace.measure,
    bench_trace_load.NAME: bench_trace_load.measure,
    bench_blk.NAME: bench_blk.measure,
    bench_net.NAME: bench_net.measure,
    bench_quantum.NAME: bench_quantum.measure,
}


def run_benchmarks(
    quick: bool, console: Console | None = None
) -> tuple[list[BenchResult], list[tuple[str, str]]]:
    """Every benchmark's result; one that raises is reported as an error, not fatal."""
    con = console or Console(stderr=True)
    results: list[BenchResult] = []
    errors: list[tuple[str, str]] = []
    for name, measure in BENCHMARKS.items():
        con.print(f"running {name}...", highlight=False)
        t0 = time.perf_counter()
        try:
            result = measure(quick)
        except Exception as err:  # noqa: BLE001 - one broken benchmark must not hide the rest
            errors.append((name, f"{type(err).__name__}: {err}"))
            continue
        result.elapsed_s = time.perf_counter() - t0
        results.append(result)
    return results, errors


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args((__doc__ or "").splitlines()[0], argv)
    t0 = time.perf_counter()
    results, errors = run_benchmarks(args.quick)
    print_results(results, errors, quick=args.quick)
    print(f"total wall time: {time.perf_counter() - t0:.1f} s")
    if args.json is not None:
        write_json(args.json, results, errors, args.quick)
    return 0 if not errors and all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
