"""`xen970 sweep`: weights x seeds on a real local Dask cluster, the dataset and summary it
writes, a bad --set refused before anything runs, and an interrupted sweep resumed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analysis import load_sweep, load_sweep_summary
from framework.errors import UsageError
from framework.suite.sweep import parse_seeds, parse_set

REPO = Path(__file__).resolve().parents[2]
_ENV = {**os.environ, "PYTHONPATH": str(REPO)}
# Two compute guests share one CPU for 120 ms: with the credit scheduler's 30 ms slices
# both run; weight 512 against 256 gives `a` the larger share.
SCENARIO = """name: weights
duration: 120ms
machine: {cpus: 1}
dom0: {vcpus: 1}
domains:
  - {name: a, memory: 64MiB, weight: 256, workloads: [{kind: compute}]}
  - {name: b, memory: 64MiB, weight: 256, workloads: [{kind: compute}]}
expect:
  - {metric: cpu_share, domain: a, at_least: 10%}
"""


def _sweep(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "framework.cli", "sweep", *args],
        cwd=REPO,
        env=_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def test_set_and_seeds_parse_as_written() -> None:
    assert parse_set("domains.a.weight=256,512") == ("domains.a.weight", [256, 512])
    assert parse_set("duration=10ms,1s") == ("duration", ["10ms", "1s"])
    assert parse_seeds("3", 7) == [0, 1, 2]
    assert parse_seeds("5-7", 7) == [5, 6, 7]
    assert parse_seeds(None, 7) == [7]
    with pytest.raises(UsageError):
        parse_set("weight")
    with pytest.raises(UsageError):
        parse_seeds("7-5", 0)


def test_a_bad_value_is_refused_naming_it(tmp_path: Path) -> None:
    scenario = tmp_path / "w.yaml"
    scenario.write_text(SCENARIO)
    done = _sweep(str(scenario), "--set", "domains.a.weight=256,0", "--out", str(tmp_path / "o"))
    out, err = done.communicate(timeout=120)
    assert done.returncode == 2, out + err
    assert err.count("\n") == 1 and "domains.a.weight=0" in err and "weight must be 1..65535" in err
    assert not (tmp_path / "o" / "runs").exists()


def test_weights_by_seeds_write_the_dataset_and_summary_and_resume(tmp_path: Path) -> None:
    scenario = tmp_path / "w.yaml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "sweep"
    args = (
        str(scenario),
        "--set",
        "domains.a.weight=256,512",
        "--seeds",
        "2",
        "--out",
        str(out),
        "--workers",
        "1",
    )
    first = _sweep(*args)
    runs = out / "runs"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and first.poll() is None:
        if runs.is_dir() and any(not p.name.startswith(".") for p in runs.iterdir()):
            break
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGKILL)
    first.communicate(timeout=60)
    finished = {p.name: p.stat().st_mtime_ns for p in runs.iterdir() if not p.name.startswith(".")}
    assert 1 <= len(finished) < 4
    second = _sweep(*args)
    stdout, stderr = second.communicate(timeout=600)
    assert second.returncode == 0, stdout + stderr
    assert f"4 run(s), {len(finished)} already done, {4 - len(finished)} to run" in stdout
    for name, mtime in finished.items():
        assert (runs / name).stat().st_mtime_ns == mtime  # not run again
    summary = load_sweep_summary(out)
    assert sorted(zip(summary["domains.a.weight"], summary["seed"])) == [
        (256, 0),
        (256, 1),
        (512, 0),
        (512, 1),
    ]
    assert set(summary["verdict"]) == {"PASS"}
    share = summary.groupby("domains.a.weight")["cpu_share:a"].mean()
    assert share[512] > share[256]
    trace = load_sweep(out, kinds=["sched.switch"])
    assert {"domains.a.weight", "seed", "run"} <= set(trace.columns)
    assert set(trace["run"]) == set(summary["run"])
