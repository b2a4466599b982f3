"""I/O metrics (analysis.io) and the `xen970 run` I/O table, on hand-computable traces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

import analysis  # noqa: F401  (registers the accessor)
from analysis.io import (
    BLOCK_STATS_COLUMNS,
    GRANT_BALANCE_COLUMNS,
    NET_BOOKS_COLUMNS,
    NET_STATS_COLUMNS,
    TCE_BALANCE_COLUMNS,
    block_stats,
    grant_balance,
    net_books,
    net_stats,
    tce_balance,
)
from analysis.run import read_trace
from framework.cli import _io_table
from framework.runinfo import write_run_json
from framework.trace import Recorder
from framework.trace.ids import K
from framework.xen.public.vcpu import RUNSTATE_NAMES, Runstate

XVDA = (202 << 8) | (0 << 4)
XVDB = (202 << 8) | (1 << 4)
RSP_OKAY, RSP_ERROR = 0, -1


def _block(rec: Recorder) -> None:
    """dom1 xvda: 5 submits, 4 completions (one an error), id 0 reused; dom2 xvdb: one.

    The reuse of id 0 is submitted at the same instant as the first id 0 completes but
    emitted after it, so only emission order tells which submit a completion answers.
    """
    e = rec.emit
    e(K.BLK_SUBMIT, 1000, 0, 1, 0, XVDA, 0, 8, 4096, text="read")
    e(K.BLK_SUBMIT, 1100, 0, 1, 0, XVDA, 1, 16, 8192, text="write")
    e(K.BLK_SUBMIT, 1500, 1, 2, 0, XVDB, 0, 0, 4096, text="read")
    e(K.BLK_COMPLETE, 1800, 1, 2, 0, XVDB, 0, RSP_OKAY, 300, text="read")
    e(K.BLK_COMPLETE, 2000, 0, 1, 0, XVDA, 0, RSP_OKAY, 1000, text="read")
    e(K.BLK_SUBMIT, 2000, 0, 1, 0, XVDA, 0, 24, 512, text="write")
    e(K.BLK_COMPLETE, 3100, 0, 1, 0, XVDA, 1, RSP_ERROR, 2000, text="write")
    e(K.BLK_COMPLETE, 5000, 0, 1, 0, XVDA, 0, RSP_OKAY, 3000, text="write")
    e(K.BLK_SUBMIT, 6000, 0, 1, 0, XVDA, 2, 32, 4096, text="read")
    e(K.BLK_SUBMIT, 6500, 0, 1, 0, XVDA, 3, 0, 0, text="flush")
    e(K.BLK_COMPLETE, 11000, 0, 1, 0, XVDA, 2, RSP_OKAY, 5000, text="read")
    e(K.BLK_VERIFY, 11000, 0, 1, 0, XVDA, 32, text="byte 0: 0x00 != 0x5a")


def _net(rec: Recorder) -> None:
    """dom2 sends 3 packets of 1000 bytes to dom1; dom1 and dom0's backend drop one each."""
    e = rec.emit
    for pkt in range(3):
        e(K.NET_TX, 100 * (pkt + 1), 1, 2, 0, 0, pkt, 1000)
    for pkt, latency in enumerate((1000, 1900, 2800)):
        e(K.NET_RX, 1100 + 1000 * pkt, 0, 1, 0, 0, pkt, 1000, latency)
    e(K.NET_DROP, 3200, 0, 0, 0, 0, -1, 60, text="vif2.0: bridge has no port")
    e(K.NET_DROP, 3300, 0, 1, 0, 0, 3, 1000, text="netstream: out of order")


def _trace(*parts: object) -> pd.DataFrame:
    rec = Recorder(enums={"runstate": RUNSTATE_NAMES})
    for part in parts:
        part(rec)  # type: ignore[operator]
    return rec.to_dataframe()


def test_block_stats_counts_bytes_and_rates_per_device() -> None:
    stats = block_stats(_trace(_block))
    assert list(stats.columns) == list(BLOCK_STATS_COLUMNS)
    assert stats.index.names == ["dom", "dev"]
    assert list(stats.index) == [(1, XVDA), (2, XVDB)]
    a = stats.loc[(1, XVDA)]
    assert a[["submitted", "completed", "errors", "reads", "writes"]].tolist() == [5, 4, 1, 2, 2]
    # Okay completions: the first id 0 (4096), the reused id 0 (512), id 2 (4096); id 1
    # (8192) failed. Matching the first id 0 completion to the reuse would give 5120.
    assert a["bytes"] == 4096 + 512 + 4096
    assert a["outstanding"] == 1 and a["verify_failures"] == 1
    # Span: first submit 1000 ns to last completion 11000 ns = 10 us.
    assert a["iops"] == pytest.approx(4 / 10e-6)
    assert a["mb_s"] == pytest.approx(8704 / 10e-6 / 1e6)
    b = stats.loc[(2, XVDB)]
    assert b[["submitted", "completed", "errors", "bytes", "outstanding"]].tolist() == [
        1,
        1,
        0,
        4096,
        0,
    ]
    assert b["iops"] == pytest.approx(1 / 300e-9)
    assert b["verify_failures"] == 0


def test_block_latency_percentiles_interpolate_linearly() -> None:
    a = block_stats(_trace(_block)).loc[(1, XVDA)]
    # Latencies 1000, 2000, 3000, 5000 ns: p50 halfway between 2000 and 3000, p90 at rank
    # 2.7 (3000 + 0.7 * 2000), p99 at rank 2.97.
    assert a["lat_p50_us"] == pytest.approx(2.5)
    assert a["lat_p90_us"] == pytest.approx(4.4)
    assert a["lat_p99_us"] == pytest.approx(4.94)
    assert a["lat_max_us"] == pytest.approx(5.0)
    assert a["lat_p50_us"] == pytest.approx(np.percentile([1, 2, 3, 5], 50))


def test_block_stats_duration_overrides_the_span() -> None:
    a = block_stats(_trace(_block), duration_ns=1_000_000).loc[(1, XVDA)]
    assert a["iops"] == pytest.approx(4000.0)
    assert a["mb_s"] == pytest.approx(8.704)


def test_completion_without_a_submit_counts_but_moves_no_bytes() -> None:
    def orphan(rec: Recorder) -> None:
        rec.emit(K.BLK_COMPLETE, 500, 0, 1, 0, XVDA, 9, RSP_OKAY, 100, text="read")
        rec.emit(K.BLK_SUBMIT, 600, 0, 1, 0, XVDA, 9, 0, 4096, text="read")

    a = block_stats(_trace(orphan)).loc[(1, XVDA)]
    assert a[["submitted", "completed", "bytes", "outstanding"]].tolist() == [1, 1, 0, 0]
    assert np.isnan(a["iops"])  # the only completion precedes the first submit


def test_net_stats_per_vif() -> None:
    stats = net_stats(_trace(_net))
    assert list(stats.columns) == list(NET_STATS_COLUMNS)
    assert list(stats.index) == [(0, 0), (1, 0), (2, 0)]
    rx = stats.loc[(1, 0)]
    assert rx[["tx_packets", "rx_packets", "rx_bytes", "drops"]].tolist() == [0, 3, 3000, 1]
    # 24000 bits between the first (1100 ns) and last (3100 ns) receipt.
    assert rx["rx_mbit_s"] == pytest.approx(24000 / 2e-6 / 1e6)
    assert rx["rx_lat_p50_us"] == pytest.approx(1.9)
    assert rx["rx_lat_p99_us"] == pytest.approx(1.9 + 0.98 * 0.9)
    tx = stats.loc[(2, 0)]
    assert tx[["tx_packets", "tx_bytes", "rx_packets", "drops"]].tolist() == [3, 3000, 0, 0]
    assert np.isnan(tx["rx_mbit_s"]) and np.isnan(tx["rx_lat_p50_us"])
    assert stats.loc[(0, 0), "drops"] == 1


def test_net_books_give_each_sent_packet_one_fate() -> None:
    def books(rec: Recorder) -> None:
        e = rec.emit
        d2, d3 = (2 << 16) << 32, ((3 << 16) | 1) << 32  # streams d2 vif 0, d3 vif 1
        for seq in range(5):
            e(K.NET_TX, 10 + seq, 0, 2, 0, 0, d2 | seq, 1000)
        e(K.NET_TX, 10, 1, 3, 0, 1, d3, 1000)
        e(K.NET_RX, 100, 0, 1, 0, 0, d2 | 0, 1000, 90)
        e(K.NET_DROP, 101, 0, 0, 0, 0, d2 | 1, 1000, text="vif2.0: rx ring empty")
        e(K.NET_RX, 102, 0, 1, 0, 0, d2 | 2, 1000, 90)
        e(K.NET_DROP, 103, 0, 1, 0, 0, d2 | 2, 1000, text="netstream: duplicate")  # extra
        e(K.NET_DROP, 104, 0, 0, 0, 0, d2 | 3, 1000, text="vif2.0: unplugged")
        e(K.NET_DROP, 105, 0, 0, 0, 0, -1, 60, text="vif9.0: no id")  # extra, no stream
        e(K.NET_DROP, 106, 1, 0, 0, 1, d3, 1000, text="vif3.1: no port")
        e(K.NET_RX, 107, 0, 1, 0, 0, d2 | 99, 1000, 90)  # never sent: extra

    got = net_books(_trace(books))
    assert list(got.columns) == list(NET_BOOKS_COLUMNS)
    assert got.index.names == ["src_dom", "src_dev"]
    assert got.to_dict("index") == {
        (-1, -1): {"sent": 0, "received": 0, "dropped": 0, "unaccounted": 0, "extra": 1},
        (2, 0): {"sent": 5, "received": 2, "dropped": 2, "unaccounted": 1, "extra": 2},
        (3, 1): {"sent": 1, "received": 0, "dropped": 1, "unaccounted": 0, "extra": 0},
    }
    assert _trace().xen.net_books().empty


def test_grant_and_tce_balance() -> None:
    def grants_and_tces(rec: Recorder) -> None:
        e = rec.emit
        for slot, ref in enumerate((8, 9, 10)):
            e(K.GNTTAB_MAP, 10 + slot, 0, 0, 0, 1, ref, slot, 0, text="")
        e(K.GNTTAB_MAP, 20, 0, 0, 0, 1, 11, 3, -1, text="bad domain")
        e(K.GNTTAB_MAP, 21, 0, 1, 0, 2, 4, 0, 0, text="")
        e(K.GNTTAB_UNMAP, 30, 0, 0, 0, 1, 8, 0, 0, text="")
        e(K.GNTTAB_UNMAP, 31, 0, 0, 0, 1, 9, 1, 0, text="")
        e(K.GNTTAB_UNMAP, 32, 0, 1, 0, 2, 4, 0, 0, text="")
        for ioba, mfn in ((0, 100), (4096, 101), (0, 0), (0, 102), (4096, 0)):
            e(K.TCE_PUT, 40, 0, 0, 0, 256, ioba, mfn)
        e(K.TCE_PUT, 41, 0, 0, 0, 257, 0, 5)

    df = _trace(grants_and_tces)
    grants = grant_balance(df)
    assert list(grants.columns) == list(GRANT_BALANCE_COLUMNS)
    assert grants.loc[0].tolist() == [3, 1, 2, 0, 1]
    assert grants.loc[1].tolist() == [1, 0, 1, 0, 0]
    tces = tce_balance(df)
    assert list(tces.columns) == list(TCE_BALANCE_COLUMNS)
    assert tces.index.name == "liobn"
    assert tces.loc[256].tolist() == [3, 2, 1]  # ioba 0 remapped last; 4096 cleared
    assert tces.loc[257].tolist() == [1, 0, 1]


@pytest.mark.parametrize("fn", [block_stats, net_stats, grant_balance, tce_balance])
def test_traces_without_io_give_empty_frames(fn: object) -> None:
    def scheduling_only(rec: Recorder) -> None:
        rec.emit(K.SCHED_RUNSTATE, 0, 0, 1, 0, int(Runstate.RUNNING), int(Runstate.RUNNABLE))

    columns = {
        block_stats: BLOCK_STATS_COLUMNS,
        net_stats: NET_STATS_COLUMNS,
        grant_balance: GRANT_BALANCE_COLUMNS,
        tce_balance: TCE_BALANCE_COLUMNS,
    }[fn]  # type: ignore[index]
    for df in (_trace(), _trace(scheduling_only)):
        out = fn(df)  # type: ignore[operator]
        assert out.empty and list(out.columns) == list(columns)


def test_accessor_delegates_and_parquet_round_trip_agrees(tmp_path: Path) -> None:
    rec = Recorder(enums={"runstate": RUNSTATE_NAMES})
    _block(rec)
    _net(rec)
    df = rec.to_dataframe()
    pd.testing.assert_frame_equal(df.xen.block_stats(), block_stats(df))
    pd.testing.assert_frame_equal(df.xen.net_stats(), net_stats(df))
    pd.testing.assert_frame_equal(df.xen.grant_balance(), grant_balance(df))
    pd.testing.assert_frame_equal(df.xen.tce_balance(), tce_balance(df))
    back = read_trace(rec.write(tmp_path))
    pd.testing.assert_frame_equal(block_stats(back), block_stats(df))
    pd.testing.assert_frame_equal(net_stats(back), net_stats(df))


def test_not_a_trace_is_refused() -> None:
    with pytest.raises(ValueError, match="missing columns kind"):
        block_stats(pd.DataFrame({"t_ns": [], "dom": []}))


def _run_dir(tmp_path: Path, *parts: object) -> Path:
    rec = Recorder(enums={"runstate": RUNSTATE_NAMES})
    for part in parts:
        part(rec)  # type: ignore[operator]
    rec.write(tmp_path)
    write_run_json(
        tmp_path,
        scenario_name="io-test",
        scenario_sha256="0" * 64,
        seed=1,
        sim_ns=20_000,
        wall_s=0.1,
        counts=rec.counts(),
        domains={0: "Domain-0", 1: "disk", 2: "stream"},
    )
    return tmp_path


def _rendered(table: object) -> list[list[str]]:
    """The table's header and body rows as printed, split into cells."""
    console = Console(width=200, record=True)
    console.print(table)
    rows = []
    for line in console.export_text().splitlines():
        sep = "┃" if "┃" in line else "│"
        if sep in line:
            rows.append([cell.strip() for cell in line.strip().strip(sep).split(sep)])
    return rows


def test_io_table_rows_per_domain_and_device(tmp_path: Path) -> None:
    rows = _rendered(_io_table(_run_dir(tmp_path, _block, _net)))
    assert rows[0] == [
        "domain",
        "device",
        "IOPS",
        "lat p50 us",
        "lat p99 us",
        "MB/s",
        "rx Mbit/s",
        "tx pkts",
        "rx pkts",
        "drops",
    ]
    body = {(r[0], r[1]): r[2:] for r in rows[1:]}
    assert list(body) == [
        ("Domain-0", "vif/0"),
        ("disk", "xvda"),
        ("disk", "vif/0"),
        ("stream", "xvdb"),
        ("stream", "vif/0"),
    ]
    # IOPS, lat p50, lat p99, MB/s, rx Mbit/s, tx pkts, rx pkts, drops
    assert body[("disk", "xvda")] == ["400000.0", "2.5", "4.9", "870.4", "", "", "", ""]
    assert body[("disk", "vif/0")] == ["", "", "", "", "12000.0", "0", "3", "1"]
    assert body[("stream", "vif/0")] == ["", "", "", "", "—", "3", "0", "0"]
    assert body[("Domain-0", "vif/0")][-1] == "1"


def test_io_table_is_left_out_without_io_or_trace(tmp_path: Path) -> None:
    def scheduling_only(rec: Recorder) -> None:
        rec.emit(K.SCHED_RUNSTATE, 0, 0, 1, 0, int(Runstate.RUNNING), int(Runstate.RUNNABLE))

    assert _io_table(_run_dir(tmp_path / "quiet", scheduling_only)) is None
    assert _io_table(tmp_path / "nothing") is None
