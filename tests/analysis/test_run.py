"""Reading a run's trace: only the kinds, columns and time window asked for, rows back in
time order, fields by name, and files of the previous (wide) format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import analysis  # noqa: F401  (registers DataFrame.xen)
from analysis.run import RUN_FILE, load_run, read_kind, read_trace
from framework.trace import Recorder
from framework.trace.ids import K
from framework.xen.public.vcpu import RUNSTATE_NAMES

DATA = Path(__file__).resolve().parents[1] / "data"
#: A trace written by the format-2 recorder (quickstart, 3 ms simulated), kept as it was.
V2_TRACE = DATA / "trace-v2.parquet"


def _recorder() -> Recorder:
    """Three kinds interleaved in time, two records of different kinds at one instant."""
    rec = Recorder(enums={"runstate": RUNSTATE_NAMES})
    for i in range(10):
        t = 100 * i
        rec.emit(K.SCHED_RUNSTATE, t, 0, 1, 0, i % 3, (i + 1) % 3)
        rec.emit(K.HCALL_ENTER, t + 10, 0, 1, 0, 29, i, 0, 0, text="sched_op")
        rec.emit(K.EVTCHN_SEND, t + 10, 1, 2, 0, 3, 1, i)
    return rec


def _spy_row_groups(monkeypatch: pytest.MonkeyPatch) -> list[set[int]]:
    """The row groups each read_trace call reads (one set per call, appended as it goes)."""
    calls: list[set[int]] = []
    original = pq.ParquetFile.read_row_group
    original_init = pq.ParquetFile.__init__

    def init(self: pq.ParquetFile, *args: object, **kwargs: object) -> None:
        calls.append(set())
        original_init(self, *args, **kwargs)

    def spy(self: pq.ParquetFile, group: int, **kwargs: object) -> object:
        calls[-1].add(group)
        return original(self, group, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "__init__", init)
    monkeypatch.setattr(pq.ParquetFile, "read_row_group", spy)
    return calls


def _run_dir(tmp_path: Path, rec: Recorder, row_group_rows: int = 1 << 20) -> Path:
    rec.write(tmp_path, row_group_rows=row_group_rows)
    (tmp_path / RUN_FILE).write_text(json.dumps({"sim_ns": 1000, "domains": {"1": "a"}}))
    return tmp_path


def test_the_whole_file_reads_back_in_time_order_with_same_instant_records_as_emitted(
    tmp_path: Path,
) -> None:
    rec = _recorder()
    df = read_trace(rec.write(tmp_path))
    pd.testing.assert_frame_equal(df, rec.to_dataframe())
    same_instant = df[df["t_ns"] == 10]["kind"].tolist()
    assert same_instant == ["hcall.enter", "evtchn.send"]


def test_kinds_read_only_their_row_groups_and_the_argument_columns_they_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _recorder().write(tmp_path)
    read = _spy_row_groups(monkeypatch)
    df = read_trace(path, kinds=["sched.*"])
    assert read == [{0}]  # row group 0 holds sched.runstate, the first kind emitted
    assert list(df.columns) == ["t_ns", "cpu", "dom", "vcpu", "kind", "a0", "a1"]
    assert set(df["kind"]) == {"sched.runstate"} and len(df) == 10
    assert df.xen.kind("sched.runstate")["state"].tolist() == [i % 3 for i in range(10)]
    two = read_trace(path, kinds=["evtchn.send", "hcall.enter"])
    assert read[-1] == {1, 2} and two["t_ns"].is_monotonic_increasing
    assert two["kind"].tolist()[:2] == ["hcall.enter", "evtchn.send"]


def test_columns_may_name_fields_and_kind_always_comes(tmp_path: Path) -> None:
    path = _recorder().write(tmp_path)
    df = read_trace(path, kinds=["hcall.enter"], columns=["t_ns", "arg0"])
    assert list(df.columns) == ["t_ns", "kind", "a1"]
    assert df["a1"].tolist() == list(range(10))
    with pytest.raises(KeyError, match="no column or field 'remote_port'"):
        read_trace(path, kinds=["hcall.enter"], columns=["remote_port"])
    with pytest.raises(KeyError, match="no record kind matches 'sched.nope'"):
        read_trace(path, kinds=["sched.nope"])


def test_a_window_skips_row_groups_before_and_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _recorder().write(tmp_path, row_group_rows=4)  # runstates at 0-300, 400-700, 800-900
    read = _spy_row_groups(monkeypatch)
    df = read_trace(path, kinds=["sched.runstate"], start=400, end=800)
    assert read == [{1}]
    assert df["t_ns"].tolist() == [400, 500, 600, 700]


def test_a_run_gives_kinds_it_did_not_load_from_the_file(tmp_path: Path) -> None:
    run = load_run(_run_dir(tmp_path, _recorder()), kinds=["sched.runstate"])
    assert set(run.trace["kind"]) == {"sched.runstate"}
    sends = run.kind("evtchn.send")
    assert list(sends.columns) == [
        "t_ns",
        "cpu",
        "dom",
        "vcpu",
        "port",
        "remote_dom",
        "remote_port",
    ]
    assert sends["remote_port"].tolist() == list(range(10))
    assert run.kind("sched.runstate", start=200, end=400)["t_ns"].tolist() == [200, 300]
    calls = read_kind(tmp_path / "trace.parquet", "hcall.enter", columns=["t_ns", "arg0", "text"])
    assert list(calls.columns) == ["t_ns", "arg0", "text"] and set(calls["text"]) == {"sched_op"}


def test_a_format_2_file_reads_into_the_narrow_layout_with_the_same_content() -> None:
    df = read_trace(V2_TRACE)
    assert list(df.columns) == [
        "t_ns",
        "cpu",
        "dom",
        "vcpu",
        "kind",
        "a0",
        "a1",
        "a2",
        "a3",
        "text",
    ]
    assert df.attrs["xen970.trace"]["version"] == 2
    # The wide view gives back exactly what the file holds, column by column.
    raw = pq.read_table(V2_TRACE).to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    back = df.xen.wide()
    assert list(back.columns) == list(raw.columns)
    for name in raw.columns:
        old = raw[name].astype(object).where(raw[name].notna(), None).tolist()
        new = back[name].astype(object).where(back[name].notna(), None).tolist()
        assert new == old, name
    rs = df.xen.kind("sched.runstate")
    assert len(rs) > 1000 and rs["state"].between(0, 3).all()
    only = read_trace(V2_TRACE, kinds=["hcall.enter"], columns=["nr"], start=1_000_000)
    assert list(only.columns) == ["kind", "a0"] and len(only) > 0


def test_extra_columns_such_as_a_sweeps_parameters_come_along(tmp_path: Path) -> None:
    path = _recorder().write(tmp_path)
    table = pq.read_table(path)
    table = table.append_column("weight", pa.array(np.full(table.num_rows, 256)))
    pq.write_table(table.replace_schema_metadata(table.schema.metadata), tmp_path / "part.parquet")
    df = read_trace(tmp_path / "part.parquet", kinds=["hcall.enter"])
    assert df["weight"].tolist() == [256] * 10 and df["t_ns"].is_monotonic_increasing
