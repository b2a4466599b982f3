"""`xen970 test PATH...`: every scenario test under the paths, run on Dask, reported as
xm-test reports, with the run directories written under `--out`."""

from __future__ import annotations

import io
import json
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from analysis.run import RUN_FILE, TRACE_FILE, Run, read_trace
from framework.errors import UsageError
from framework.suite.collect import TestFile, collect
from framework.suite.engine import Engine
from framework.suite.fingerprints import first_difference, reference_path, update_scenario
from framework.suite.job import Job, JobResult, run_job, write_run_files
from framework.suite.report import counts, report_lines, write_junit

__all__ = ["SuiteOptions", "run_suite"]

#: Files that mark a directory as one xen970 wrote (so it may be replaced).
_RUN_MARKERS: Final = (RUN_FILE, "error.log")


@dataclass(frozen=True)
class SuiteOptions:
    """What `xen970 test` was asked."""

    paths: tuple[str, ...]
    out: Path
    junit: Path | None = None
    timeout_s: float = 60.0
    scheduler: str | None = None
    workers: int | None = None
    update_fingerprints: bool = False


def _job(test: TestFile, timeout_s: float) -> Job:
    try:
        text = test.path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"xen970 test: {test.path}: cannot read: {exc}") from None
    return Job(test.test_id, str(test.path), text, str(test.path.parent.resolve()), timeout_s)


def _lost(job: Job, exc: BaseException) -> JobResult:
    """A job whose worker died or whose run raised past the job's own handling."""
    return JobResult(
        job.test_id, "FAIL", f"the worker lost the job: {type(exc).__name__}: {exc}", 0.0
    )


def _store(out: Path, test: TestFile, result: JobResult) -> None:
    """Write the run files under out/<group>/<name>, replacing an earlier run there."""
    target = out / test.group / test.name
    if target.exists():
        if not any((target / m).exists() for m in _RUN_MARKERS):
            raise UsageError(f"xen970 test: {target}: exists and is not a run directory")
        shutil.rmtree(target)
    write_run_files(result.files, target)


def _explain(test: TestFile, result: JobResult) -> JobResult:
    """Add the first differing record to each failed fingerprint with a reference."""
    if TRACE_FILE not in result.files:
        return result
    notes = []
    run: Run | None = None
    for index, check in enumerate(result.checks):
        ref = reference_path(test.path, index)
        if check["metric"] != "fingerprint" or check["verdict"] == "PASS" or not ref.is_file():
            continue
        if run is None:
            meta = json.loads(result.files[RUN_FILE])
            run = Run(trace=read_trace(io.BytesIO(result.files[TRACE_FILE])), meta=meta)
        notes.append(
            f"{check['name']}: {first_difference(ref, run, run.meta['expect'][index]['selectors'])}"
        )
    if not notes:
        return result
    return replace(result, reason=f"{result.reason}; {'; '.join(notes)}")


def _after_update(result: JobResult) -> JobResult:
    """A result judged again once its fingerprints were written: a FAIL whose only failed
    checks were fingerprints now passes."""
    others = [c for c in result.failed_checks if c["metric"] != "fingerprint"]
    if result.verdict != "FAIL" or others or not result.failed_checks:
        return result
    return replace(result, verdict="PASS", reason="fingerprints updated")


def run_suite(options: SuiteOptions) -> int:
    """Run, report, write; exit code 0 when nothing FAILed or timed out."""
    tests = collect(list(options.paths))
    if not tests:
        raise UsageError(
            f"xen970 test: no scenario with expect, xfail or skip under {', '.join(options.paths)}"
        )
    jobs = [_job(t, options.timeout_s) for t in tests]
    t0 = time.perf_counter()
    results: list[JobResult | None] = [None] * len(jobs)
    with Engine(options.scheduler, options.workers) as engine:
        where = engine.description
        for i, result in engine.run(run_job, jobs, _lost):
            result = _explain(tests[i], result)
            results[i] = result
            _store(options.out, tests[i], result)
            print(f"{result.verdict:>7}  {tests[i].test_id}  ({result.wall_s:.1f} s)", flush=True)
    done = [r for r in results if r is not None]
    assert len(done) == len(tests)
    wall = time.perf_counter() - t0
    if options.update_fingerprints:
        for i, (test, result) in enumerate(zip(tests, done, strict=True)):
            if any(c["metric"] == "fingerprint" for c in result.checks):
                changed = update_scenario(test.path, list(result.checks), result.files)
                for name in changed:
                    print(f"updated fingerprint {name!r} in {test.path}")
                done[i] = _after_update(result)
    for line in report_lines(tests, done, where, wall):
        print(line)
    if options.junit is not None:
        write_junit(options.junit, tests, done)
        print(f"JUnit XML: {options.junit}", file=sys.stderr)
    total = counts(done)
    return 1 if total["FAIL"] or total["TIMEOUT"] else 0
