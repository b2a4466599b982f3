"""Fields by name from a narrow trace frame, and from a wide one (the version 2 layout)."""

from __future__ import annotations

import pandas as pd
import pytest

import analysis  # noqa: F401  (registers DataFrame.xen)
from framework.trace import Recorder
from framework.trace.ids import K


def _frame() -> pd.DataFrame:
    rec = Recorder()
    rec.emit(K.SCHED_RUNSTATE, 0, 0, 1, 0, 2, 0)
    rec.emit(K.EVTCHN_SEND, 5, 0, 1, 0, 3, 2, 7)
    rec.emit(K.EVTCHN_PENDING, 6, 1, 2, 0, 7)
    rec.emit(K.SCHED_BLOCK, 9, 0, 1, 0)
    return rec.to_dataframe()


def test_a_field_over_every_row_is_na_where_the_kind_lacks_it() -> None:
    port = _frame().xen.field("port")
    assert port.dtype == pd.Int64Dtype()
    assert port.tolist() == [pd.NA, 3, 7, pd.NA]
    with pytest.raises(KeyError, match="no record kind of this trace has a field 'colour'"):
        _frame().xen.field("colour")


def test_the_wide_view_has_one_column_per_field_of_the_kinds_asked_for() -> None:
    wide = _frame().xen.wide(["evtchn.send", "evtchn.pending"])
    assert list(wide.columns) == ["t_ns", "cpu", "dom", "vcpu", "kind", "port", "remote_dom",
                                  "remote_port", "text"]  # fmt: skip
    assert wide["remote_port"].tolist() == [7, pd.NA]
    assert wide.index.tolist() == [1, 2]


def test_kind_views_and_fields_read_a_wide_frame_the_same_way() -> None:
    narrow = _frame()
    wide = narrow.xen.wide()
    for name in ("sched.runstate", "evtchn.send", "evtchn.pending"):
        pd.testing.assert_frame_equal(wide.xen.kind(name), narrow.xen.kind(name))
    assert wide.xen.field("port").tolist() == narrow.xen.field("port").tolist()
    assert narrow.xen.kind("evtchn.send", columns=["t_ns", "remote_port"]).to_dict("list") == {
        "t_ns": [5],
        "remote_port": [7],
    }
