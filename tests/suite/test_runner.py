"""`xen970 test` end to end on real Dask clusters: the local default and a scheduler with two
workers started by hand, which must agree verdict for verdict and fingerprint for
fingerprint; the report's counts against the JUnit file, validated against its schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
import xmlschema
from distributed import Client

from tests.suite.scenarios import write_suite

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "tests" / "data" / "junit" / "junit-10.xsd"
_ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def _xen970(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "framework.cli", *args],
        cwd=REPO,
        env=_ENV,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def _verdicts(stdout: str) -> dict[str, str]:
    """test id -> verdict, from the progress lines (`   PASS  group/name  (0.1 s)`)."""
    out = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3] == "s)" and "/" in parts[1]:
            out[parts[1]] = parts[0]
    return out


def _fingerprints(out: Path) -> dict[str, object]:
    found = {}
    for run_json in sorted(out.rglob("run.json")):
        meta = json.loads(run_json.read_text())
        for check in meta["expectations"]:
            if check["metric"] == "fingerprint":
                found[run_json.parent.relative_to(out).as_posix()] = check["measured"]
    return found


@pytest.fixture(scope="module")
def local_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    root = tmp_path_factory.mktemp("suite")
    write_suite(root / "tests")
    out = root / "out"
    done = _xen970(
        "test", str(root / "tests"), "--out", str(out), "--junit", str(root / "junit.xml")
    )
    return root, out, done


def test_the_local_cluster_runs_every_test_and_reports_as_xm_test(
    local_run: tuple[Path, Path, subprocess.CompletedProcess[str]],
) -> None:
    root, out, done = local_run
    assert done.returncode == 1, done.stderr  # two tests must fail
    expected = write_suite(root / "expected")
    assert _verdicts(done.stdout) == expected
    assert "on local Dask cluster" in done.stdout
    total = next(line for line in done.stdout.splitlines() if line.startswith("total"))
    assert total.split() == ["total", "1", "3", "0", "1", "1", "0"]
    assert (out / "timer" / "02_late_neg" / "trace.parquet").is_file()
    assert "FAIL: timer/02_late_neg: timer_interval domain=g: measured 1ms" in done.stdout


def test_the_junit_file_validates_and_matches_the_report(
    local_run: tuple[Path, Path, subprocess.CompletedProcess[str]],
) -> None:
    root, _, _ = local_run
    junit = root / "junit.xml"
    xmlschema.XMLSchema(SCHEMA).validate(junit)
    tree = ET.parse(junit).getroot()
    assert tree.get("tests") == "6" and tree.get("failures") == "3"
    cases = {
        f"{c.get('classname').removeprefix('xm-test.')}/{c.get('name')}": c
        for c in tree.iter("testcase")
    }
    assert cases["timer/02_late_neg"].find("failure") is not None
    assert "XFAIL" in cases["create/03_pause_pos"].find("skipped").get("message")
    assert cases["create/04_skip_pos"].find("skipped") is not None
    assert list(cases["create/01_badrma_neg"]) == []


@pytest.fixture(scope="module")
def hand_started_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`dask scheduler` and two `dask worker` processes, as a user starts them."""
    root = tmp_path_factory.mktemp("cluster")
    info = root / "scheduler.json"
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    procs = [
        subprocess.Popen(
            [
                *dask,
                "--scheduler-file",
                str(info),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
            ],
            cwd=root,
            env=_ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    try:
        deadline = time.monotonic() + 60
        while not info.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(info.read_text())["address"]
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "distributed.cli.dask_worker",
                        address,
                        "--nthreads",
                        "1",
                        "--no-dashboard",
                    ],
                    cwd=root,
                    env=_ENV,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        with Client(address, timeout="60s") as client:  # both workers in before the suite
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


def test_a_hand_started_cluster_gives_the_same_verdicts_and_fingerprints(
    local_run: tuple[Path, Path, subprocess.CompletedProcess[str]],
    hand_started_cluster: str,
    tmp_path: Path,
) -> None:
    root, local_out, local_done = local_run
    out = tmp_path / "out"
    done = _xen970(
        "test", str(root / "tests"), "--out", str(out), "--scheduler", hand_started_cluster
    )
    assert done.returncode == 1, done.stderr
    assert f"Dask scheduler {hand_started_cluster}, 2 worker(s)" in done.stdout
    assert _verdicts(done.stdout) == _verdicts(local_done.stdout)
    assert _fingerprints(out) == _fingerprints(local_out) != {}


def test_update_fingerprints_rewrites_the_file_and_then_it_passes(tmp_path: Path) -> None:
    write_suite(tmp_path / "tests")
    tick = tmp_path / "tests" / "timer" / "01_tick_pos.yaml"
    done = _xen970("test", str(tick), "--out", str(tmp_path / "out"), "--update-fingerprints")
    assert "updated fingerprint 'fingerprint'" in done.stdout
    assert done.returncode == 0, done.stdout  # only the fingerprint failed: now written
    text = tick.read_text()
    assert text.startswith("# A 1 kHz timer")  # comments and layout stay
    assert (tick.parent / "fingerprints" / "01_tick_pos.1.parquet").is_file()
    again = _xen970("test", str(tick), "--out", str(tmp_path / "out"), "--workers", "1")
    assert again.returncode == 0, again.stdout
    tick.write_text(
        text.replace("duration: 20ms", "duration: 20ms\nseed: 0\n").replace("64MiB", "128MiB")
    )
    moved = _xen970("test", str(tick), "--out", str(tmp_path / "out"), "--workers", "1")
    assert moved.returncode == 1
    assert "fingerprint: record " in moved.stdout and "differs: t_ns: " in moved.stdout


def test_pytest_collects_and_runs_the_same_tests(tmp_path: Path) -> None:
    expected = write_suite(tmp_path / "tests")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-rA",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            "--xen970-out",
            str(tmp_path / "out"),
            str(tmp_path / "tests"),
        ],
        cwd=REPO,
        env=_ENV,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 1, done.stdout
    summary = done.stdout.splitlines()[-1]
    assert "3 failed, 1 passed, 1 skipped, 1 xfailed" in summary, done.stdout
    assert "timer_interval domain=g: measured 1ms, expected ≤ 999us" in done.stdout
    assert f"run directory: {tmp_path / 'out' / 'timer' / '02_late_neg'}" in done.stdout
    assert len(expected) == 6
