"""benchmarks.bench_suite runs the suite's quick groups both ways and reports its figures."""

from __future__ import annotations

from benchmarks import bench_suite


def test_the_suite_benchmark_runs_both_ways_with_the_same_verdicts() -> None:
    result = bench_suite.measure(quick=True)
    details = dict(result.details)
    assert details["same verdicts both ways"] == "yes"
    assert int(details["scenarios"]) >= 10
    assert result.unit == "overhead" and result.figure > -1
    assert details["on Dask (warm cluster)"].endswith(" s")
