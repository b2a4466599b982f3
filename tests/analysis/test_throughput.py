"""I/O transfers and throughput per time bin on synthetic run A."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis import Run
from analysis.throughput import THROUGHPUT_INDEX, io_throughput_series, io_transfers
from tests.analysis.synthetic_runs import BLK_DEV, run_a


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run_a(Path(tmp_path_factory.mktemp("run_a")))


def test_transfers_take_bytes_from_the_matching_submit(run: Run) -> None:
    moved = io_transfers(run)
    assert moved[["t_ns", "domain", "io", "dev", "bytes"]].values.tolist() == [
        [350, "alpha", "block", BLK_DEV, 4096],
        [560, "alpha", "block", BLK_DEV, 8192],
        [900, "beta", "net", 0, 1000],
    ]
    assert io_transfers(run, 400, 900)["bytes"].tolist() == [8192]


def test_throughput_series_every_bin_for_every_device(run: Run) -> None:
    series = io_throughput_series(run, bin_ns=500)
    assert list(series.index.names) == list(THROUGHPUT_INDEX)
    assert series["bytes"].to_dict() == {
        (0, "alpha", "block", BLK_DEV): 4096,
        (0, "beta", "net", 0): 0,
        (500, "alpha", "block", BLK_DEV): 8192,
        (500, "beta", "net", 0): 1000,
    }
    # 8192 bytes in 500 ns = 16384 MB/s
    assert series.loc[(500, "alpha", "block", BLK_DEV), "mb_s"] == pytest.approx(16384.0)
