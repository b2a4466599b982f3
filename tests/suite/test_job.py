"""One scenario judged in-process: each verdict, the packed run directory, the timeout."""

from __future__ import annotations

from pathlib import Path

from framework.suite.collect import collect
from framework.suite.job import Job, run_job
from tests.suite.scenarios import TICK, write_suite


def _job(path: Path, timeout_s: float = 60.0) -> Job:
    return Job(path.stem, str(path), path.read_text(), str(path.parent), timeout_s)


def test_every_verdict(tmp_path: Path) -> None:
    expected = write_suite(tmp_path)
    got = {t.test_id: run_job(_job(t.path)).verdict for t in collect([str(tmp_path)])}
    assert got == expected


def test_a_run_comes_back_as_files(tmp_path: Path) -> None:
    write_suite(tmp_path)
    result = run_job(_job(tmp_path / "timer" / "02_late_neg.yaml"))
    assert {"trace.parquet", "run.json", "console/g.log"} <= set(result.files)
    failed = result.failed_checks[0]
    assert failed["name"] == "timer_interval domain=g" and failed["bound"] == "≤ 999us"
    assert "timer_interval domain=g: measured 1ms, expected ≤ 999us" in result.reason


def test_a_negative_test_says_what_was_refused(tmp_path: Path) -> None:
    write_suite(tmp_path)
    result = run_job(_job(tmp_path / "create" / "01_badrma_neg.yaml"))
    assert result.verdict == "PASS" and "invalid RMA size 96MiB" in result.reason
    accepted = run_job(_job(tmp_path / "create" / "02_fine_neg.yaml"))
    assert accepted.reason == "validation accepted the file; expected a refusal matching /anything/"


def test_a_scenario_over_its_wall_time_limit_is_a_timeout(tmp_path: Path) -> None:
    path = tmp_path / "slow.yaml"
    path.write_text(TICK.replace("duration: 20ms", "duration: 60s").replace("FP", "0"))
    result = run_job(_job(path, timeout_s=0.5))
    assert result.verdict == "TIMEOUT"
    assert result.reason == "still running after 0.5 s of wall time"
    assert result.wall_s < 10
