"""One scenario test, run where a Dask worker (or the pytest plugin) runs it.

A job carries the scenario's text, not its path, and the result carries the run
directory's files as bytes: a worker on another machine needs no shared file system, and
the client writes the files where `--out` says.  Verdicts are xm-test's: PASS, FAIL,
XPASS, XFAIL, SKIP and TIMEOUT.
"""

from __future__ import annotations

import re
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from analysis.expectations import CheckResult
from framework import __version__
from framework.errors import RunTimeout, ScenarioError, fault_reason
from framework.scenario import Scenario, parse_scenario
from framework.simulation import run_scenario

__all__ = ["VERDICTS", "Job", "JobResult", "run_job", "write_run_files"]

#: The verdicts a report counts, in xm-test's order.
VERDICTS: Final = ("PASS", "FAIL", "XPASS", "XFAIL", "SKIP", "TIMEOUT")
_CRASH_LOG: Final = "error.log"


@dataclass(frozen=True)
class Job:
    """A scenario to judge: its text and where it came from (for messages and images)."""

    test_id: str
    source: str  # the path as given, for messages
    text: str
    base_dir: str  # relative vbd images resolve here (on the worker's file system)
    timeout_s: float
    version: str = __version__


@dataclass(frozen=True)
class JobResult:
    """A judged scenario: verdict, one-line reason, checks, and the run directory's files."""

    test_id: str
    verdict: str
    reason: str
    wall_s: float
    checks: tuple[dict[str, Any], ...] = ()
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def failed_checks(self) -> list[dict[str, Any]]:
        """The checks that did not pass."""
        return [c for c in self.checks if c["verdict"] != "PASS"]


def _negative(job: Job, refusal: str, t0: float) -> JobResult:
    """A negative test that validated: it should have been refused."""
    return JobResult(
        job.test_id,
        "FAIL",
        f"validation accepted the file; expected a refusal matching /{refusal}/",
        time.perf_counter() - t0,
    )


def _refused(job: Job, exc: ScenarioError, t0: float) -> JobResult:
    """Validation refused the file: PASS for a negative test whose regex finds the message."""
    wall = time.perf_counter() - t0
    message = str(exc)
    wanted = exc.expected_refusal
    if wanted is None:
        return JobResult(job.test_id, "FAIL", f"invalid scenario: {message}", wall)
    if re.search(wanted, message):
        return JobResult(job.test_id, "PASS", f"refused as expected: {message}", wall)
    return JobResult(job.test_id, "FAIL", f"refused, but not matching /{wanted}/: {message}", wall)


def _pack(out: Path) -> dict[str, bytes]:
    """Every file of a run directory, by its path relative to it."""
    return {
        p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
    }


def write_run_files(files: dict[str, bytes], out: Path) -> None:
    """Write a packed run directory to `out` (created; files of the same names replaced)."""
    for rel, data in files.items():
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def _judged(job: Job, scenario: Scenario, out: Path, t0: float) -> JobResult:
    deadline = t0 + job.timeout_s

    def watchdog(_done: int, _total: int) -> None:
        if time.perf_counter() > deadline:
            raise RunTimeout(f"still running after {job.timeout_s:g} s of wall time")

    try:
        result = run_scenario(scenario, out, progress=watchdog)
    except RunTimeout as exc:
        return JobResult(job.test_id, "TIMEOUT", str(exc), time.perf_counter() - t0)
    except Exception as exc:  # noqa: BLE001 - a simulator failure is this test's FAIL
        (out / _CRASH_LOG).write_text("".join(traceback.format_exception(exc)))
        wall = time.perf_counter() - t0
        failure = f"simulation failed: {fault_reason(exc)}"
        if scenario.xfail is not None:
            verdict, failure = "XFAIL", f"expected to fail ({scenario.xfail}): {failure}"
        else:
            verdict = "FAIL"
        return JobResult(job.test_id, verdict, failure, wall, (), _pack(out))
    checks = tuple(c.as_json() for c in result.checks)
    verdict = result.outcome or ("PASS" if scenario.xfail is None else "XPASS")
    reason = _reason(verdict, result.checks, scenario)
    return JobResult(job.test_id, verdict, reason, time.perf_counter() - t0, checks, _pack(out))


def _reason(verdict: str, checks: tuple[CheckResult, ...], scenario: Scenario) -> str:
    failed = [c for c in checks if c.verdict == "FAIL"]
    detail = "; ".join(f"{c.name}: measured {c.shown}, expected {c.bound}" for c in failed)
    if verdict == "XFAIL":
        return f"expected to fail ({scenario.xfail}): {detail}"
    if verdict == "XPASS":
        return f"passed, but expected to fail ({scenario.xfail})"
    if verdict == "FAIL":
        return detail
    return f"{len(checks)} check(s) passed"


def run_job(job: Job) -> JobResult:
    """Validate, run and judge one scenario in a fresh temporary run directory."""
    t0 = time.perf_counter()
    if job.version != __version__:
        return JobResult(
            job.test_id,
            "FAIL",
            f"this worker runs xen970 {__version__}, the client {job.version}",
            0.0,
        )
    try:
        scenario = parse_scenario(job.text, job.source, base_dir=job.base_dir)
    except ScenarioError as exc:
        return _refused(job, exc, t0)
    if scenario.refused is not None:
        return _negative(job, scenario.refused.refused, t0)
    if scenario.skip is not None:
        return JobResult(job.test_id, "SKIP", scenario.skip, 0.0)
    with tempfile.TemporaryDirectory(prefix="xen970-test-") as tmp:
        return _judged(job, scenario, Path(tmp), t0)
