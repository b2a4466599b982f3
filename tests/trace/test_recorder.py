"""The recorder: cheap emission, typed narrow columns, deterministic parquet files grouped
by kind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute
import pyarrow.parquet as pq
import pytest

import analysis  # noqa: F401  (registers DataFrame.xen)
from analysis.run import read_trace
from framework.errors import TraceError
from framework.trace import KINDS, Recorder
from framework.trace.ids import K
from framework.trace.recorder import SEQ_COLUMN, TRACE_FILE
from framework.trace.schema import ARG_COLUMNS


def _sample() -> Recorder:
    rec = Recorder()
    rec.emit(K.DOM_CREATE, 0, -1, 1, -1, 128 << 20, 2, 64 << 20, 64 << 20)
    rec.emit(K.SCHED_RUNSTATE, 10, 0, 1, 0, 0, 1)
    rec.emit(K.HCALL_ENTER, 20, 0, 1, 0, 29, 1, 0, 0, text="sched_op")
    rec.emit(K.HCALL_EXIT, 25, 0, 1, 0, 29, -22, text="sched_op")
    rec.emit(K.EXC_RFID, 30, 0, 1, 0, 0x100, 0x8000_0000_0000_1032)
    rec.emit(K.CONSOLE_OUT, 40, 0, 1, 0, text="hello")
    rec.emit(K.SCHED_BLOCK, 50, 1, 1, 0)
    return rec


def test_emit_appends_one_record_each() -> None:
    rec = _sample()
    assert len(rec) == 7
    assert rec.records[1] == (K.SCHED_RUNSTATE, 10, 0, 1, 0, 0, 1, 0, 0, None)
    assert rec.counts() == {
        "sched.block": 1,
        "sched.runstate": 1,
        "hcall.enter": 1,
        "hcall.exit": 1,
        "exc.rfid": 1,
        "dom.create": 1,
        "console.out": 1,
    }
    assert list(rec.counts()) == [k.name for k in KINDS if k.name in rec.counts()]


def test_disabled_recorder_keeps_nothing() -> None:
    rec = Recorder(enabled=False)
    rec.emit(K.SCHED_BLOCK, 1, 0, 1, 0)
    rec.emit(K.CONSOLE_OUT, 2, 0, 1, 0, text="x")
    assert len(rec) == 0 and not rec.enabled
    assert rec.emit is not Recorder().emit
    assert rec.to_dataframe().empty


def test_dataframe_columns_and_dtypes() -> None:
    df = _sample().to_dataframe()
    assert list(df.columns) == ["t_ns", "cpu", "dom", "vcpu", "kind", *ARG_COLUMNS, "text"]
    assert df["t_ns"].dtype == np.int64
    assert all(df[c].dtype == np.int16 for c in ("cpu", "dom", "vcpu"))
    assert list(df["kind"].cat.categories) == [k.name for k in KINDS]
    assert all(df[c].dtype == np.int64 for c in ARG_COLUMNS)
    assert list(df["text"].cat.categories) == ["sched_op", "hello"]
    assert df["t_ns"].is_monotonic_increasing


def test_a_kinds_fields_are_its_argument_columns_in_order() -> None:
    df = _sample().to_dataframe()
    runstate = df.iloc[1]
    assert runstate["kind"] == "sched.runstate"
    assert (runstate["a0"], runstate["a1"], runstate["a2"], runstate["a3"]) == (0, 1, 0, 0)
    exit_row = df.xen.kind("hcall.exit").iloc[0]
    assert exit_row["nr"] == 29 and exit_row["result"] == -22 and exit_row["text"] == "sched_op"
    assert pd.isna(df.iloc[1]["text"])
    create = df.xen.kind("dom.create").iloc[0]
    assert create["rma_size"] == 64 << 20 and create["vcpu"] == -1
    wide = df.xen.wide()
    assert wide.loc[1, ["state", "prev_state"]].tolist() == [0, 1]
    assert wide.loc[1, ["nr", "rma_size"]].isna().all()


def test_register_images_keep_their_bit_pattern() -> None:
    msr = _sample().to_dataframe().xen.kind("exc.rfid")["msr"].iloc[0]
    assert int(msr) % (1 << 64) == 0x8000_0000_0000_1032


def test_write_is_byte_for_byte_deterministic(tmp_path: Path) -> None:
    a = _sample().write(tmp_path / "a")
    b = _sample().write(tmp_path / "b")
    assert a == tmp_path / "a" / TRACE_FILE
    assert a.read_bytes() == b.read_bytes()


def test_the_file_holds_one_kind_per_row_group_and_each_records_time_position(
    tmp_path: Path,
) -> None:
    rec = _sample()
    rec.emit(K.SCHED_RUNSTATE, 45, 1, 1, 0, 1, 0)
    pf = pq.ParquetFile(rec.write(tmp_path))
    kinds = [
        pf.read_row_group(g, columns=["kind"]).column("kind").to_pylist()
        for g in range(pf.metadata.num_row_groups)
    ]
    assert all(len(set(group)) == 1 for group in kinds)
    assert [group[0] for group in kinds] == [k.name for k in KINDS if k.name in rec.counts()]
    table = pf.read()
    runstates = table.filter(pa.compute.equal(table.column("kind"), "sched.runstate"))
    assert runstates.column(SEQ_COLUMN).to_pylist() == [1, 6]  # t_ns 10 and 45
    assert sorted(table.column(SEQ_COLUMN).to_pylist()) == list(range(len(rec)))


def test_parquet_round_trip_keeps_dtypes(tmp_path: Path) -> None:
    rec = _sample()
    back = read_trace(rec.write(tmp_path))
    pd.testing.assert_frame_equal(back, rec.to_dataframe())
    empty = Recorder()
    pd.testing.assert_frame_equal(read_trace(empty.write(tmp_path / "e")), empty.to_dataframe())


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ((99, 0, 0, 0, 0), "record 0: unknown kind id 99"),
        ((K.SCHED_BLOCK, 0, 0, 0, 0, 5), "record 0: kind sched.block has no field f0, got 5"),
        ((K.SCHED_WAKE, 0, 0, 0, 0, 1, 2), "record 0: kind sched.wake has no field f1, got 2"),
        ((K.SCHED_BLOCK, 0, 40000, 0, 0), "record 0: cpu 40000 does not fit in int16"),
    ],
)
def test_records_that_break_the_schema_are_refused(record: tuple[int, ...], message: str) -> None:
    rec = Recorder()
    rec.emit(*record)
    with pytest.raises(TraceError) as info:
        rec.to_dataframe()
    assert str(info.value) == message


def test_text_on_a_kind_without_text_is_refused() -> None:
    rec = Recorder()
    rec.emit(K.SCHED_BLOCK, 0, 0, 1, 0)
    rec.emit(K.SCHED_BLOCK, 1, 0, 1, 0, text="why")
    with pytest.raises(TraceError, match="record 1: kind sched.block has no text column"):
        rec.to_arrow()


def test_records_since_a_count_are_the_newer_ones() -> None:
    rec = Recorder()
    rec.emit(K.SCHED_BLOCK, 0, 0, 1, 0)
    n = len(rec)
    rec.emit(K.SCHED_BLOCK, 5, 1, 2, 0)
    assert (
        rec.records_since(n) == rec.records[n:] == [(K.SCHED_BLOCK, 5, 1, 2, 0, 0, 0, 0, 0, None)]
    )
    assert rec.counts() == {"sched.block": 2}
