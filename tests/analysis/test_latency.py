"""Latency samples (event round trip per channel, wake-to-run, timer lateness, I/O) and
their summaries, against hand-computed values on synthetic run A."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from analysis import Run
from analysis.latency import (
    event_round_trip,
    io_latency,
    latency_series,
    latency_stats,
    timer_lateness,
    upcall_latency,
    wake_to_run,
)
from tests.analysis.synthetic_runs import BLK_DEV, run_a


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run_a(Path(tmp_path_factory.mktemp("run_a")))


def test_round_trip_per_channel_from_each_end(run: Run) -> None:
    rtt = event_round_trip(run)
    got = rtt[["t_ns", "domain", "port", "remote_domain", "remote_port", "latency_ns"]]
    assert got.values.tolist() == [
        # alpha's second send at 110 belongs to the round trip started at 100.
        [100, "alpha", 5, "beta", 7, 90],
        [160, "beta", 7, "alpha", 5, 470],
        [600, "alpha", 5, "beta", 7, 100],
    ]


def test_round_trip_window_selects_by_start(run: Run) -> None:
    rtt = event_round_trip(run, start=150, end=700)
    assert rtt[["t_ns", "latency_ns"]].values.tolist() == [[160, 470], [600, 100]]
    stats = latency_stats(event_round_trip(run), by=["domain", "port"])
    assert stats.loc[("alpha", 5), "count"] == 2
    assert stats.loc[("alpha", 5), "p50_us"] == pytest.approx(0.095)
    assert stats.loc[("beta", 7), "mean_us"] == pytest.approx(0.47)


def test_wake_to_run_per_vcpu(run: Run) -> None:
    lat = wake_to_run(run)
    # Domain-0's wake at 900 is never followed by a run: left out.
    assert lat[["t_ns", "domain", "dom", "vcpu", "latency_ns"]].values.tolist() == [
        [400, "alpha", 1, 0, 50],
        [500, "alpha", 1, 1, 20],
    ]
    assert wake_to_run(run, start=450)["latency_ns"].tolist() == [20]
    stats = latency_stats(lat, by=["domain", "vcpu"], percentiles=(50,))
    assert stats["p50_us"].to_dict() == pytest.approx({("alpha", 0): 0.05, ("alpha", 1): 0.02})


def test_timer_lateness(run: Run) -> None:
    late = timer_lateness(run)
    assert late[["t_ns", "domain", "vcpu", "latency_ns"]].values.tolist() == [
        [200, "alpha", 0, 10],
        [400, "alpha", 0, 55],
    ]


def test_io_latency_block_and_net(run: Run) -> None:
    lat = io_latency(run)
    assert lat[["t_ns", "domain", "io", "dev", "latency_ns"]].values.tolist() == [
        [100, "alpha", "block", BLK_DEV, 250],
        [360, "alpha", "block", BLK_DEV, 200],
        [860, "beta", "net", 0, 40],
    ]


def test_upcall_latency_without_upcalls_is_empty(run: Run) -> None:
    assert upcall_latency(run).empty
    assert list(upcall_latency(run).columns) == [
        "t_ns",
        "dom",
        "domain",
        "vcpu",
        "port",
        "latency_ns",
    ]


def test_stats_of_all_samples_and_of_none(run: Run) -> None:
    stats = latency_stats(io_latency(run), by=None)
    assert stats.loc["all", "count"] == 3
    assert stats.loc["all", "p50_us"] == pytest.approx(0.2)
    empty = latency_stats(upcall_latency(run), by=None)
    assert empty.loc["all", "count"] == 0 and np.isnan(empty.loc["all", "p99_us"])


def test_latency_series_bins_samples_by_start(run: Run) -> None:
    series = latency_series(run, io_latency(run), bin_ns=500)
    assert list(series.index) == [0, 500]
    assert series["count"].tolist() == [2, 1]
    assert series["p50_us"].tolist() == pytest.approx([0.225, 0.04])
    grouped = latency_series(run, io_latency(run), bin_ns=500, by="io")
    assert grouped["count"].to_dict() == {(0, "block"): 2, (500, "net"): 1}
    with pytest.raises(ValueError, match="samples have no column"):
        latency_series(run, io_latency(run), by="port")
