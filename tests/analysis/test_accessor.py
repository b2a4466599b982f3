"""DataFrame.xen metrics, checked exactly on a small synthetic trace."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import analysis  # noqa: F401  (registers the accessor)
from framework.trace import Recorder
from framework.trace.ids import K
from framework.xen.public.vcpu import RUNSTATE_NAMES, Runstate

RUN, WAIT, BLOCK, OFF = Runstate.RUNNING, Runstate.RUNNABLE, Runstate.BLOCKED, Runstate.OFFLINE
END = 1000


def _trace() -> pd.DataFrame:
    """dom1 has two VCPUs, dom2 one; records are emitted in time order."""
    rec = Recorder(enums={"runstate": RUNSTATE_NAMES})
    e = rec.emit
    e(K.SCHED_RUNSTATE, 0, 0, 1, 0, RUN, WAIT)
    e(K.SCHED_RUNSTATE, 0, 1, 2, 0, RUN, WAIT)
    e(K.HCALL_ENTER, 50, 0, 1, 0, 29, 0, 0, 0, text="sched_op")
    e(K.SCHED_RUNSTATE, 100, 0, 1, 0, WAIT, RUN)
    e(K.SCHED_RUNSTATE, 150, 0, 1, 0, RUN, WAIT)
    e(K.SCHED_RUNSTATE, 200, 1, 1, 1, BLOCK, RUN)
    e(K.EVTCHN_SEND, 210, 0, 1, 0, 3, 2, 5)
    e(K.HCALL_ENTER, 220, 0, 1, 0, 32, 4, 0, 0, text="event_channel_op")
    e(K.HCALL_ENTER, 230, 0, 1, 0, 29, 1, 0, 0, text="sched_op")
    e(K.SCHED_RUNSTATE, 300, 0, 1, 0, BLOCK, RUN)
    e(K.EVTCHN_PENDING, 400, 1, 2, 0, 5)
    e(K.EVTCHN_UPCALL, 430, 1, 2, 0, 1)
    e(K.EVTCHN_HANDLED, 435, 1, 2, 0, 5)
    e(K.EVTCHN_PENDING, 450, 1, 2, 0, 5)
    e(K.EVTCHN_PENDING, 460, 1, 2, 0, 6)
    e(K.EVTCHN_UPCALL, 470, 0, 1, 0, 0)
    e(K.HCALL_ENTER, 480, 1, 2, 0, 17, 0, 0, 0)
    e(K.EVTCHN_UPCALL, 500, 1, 2, 0, 1)
    e(K.SCHED_RUNSTATE, 500, 1, 2, 0, OFF, RUN)
    e(K.EVTCHN_HANDLED, 505, 1, 2, 0, 5)
    e(K.EVTCHN_HANDLED, 506, 1, 2, 0, 6)
    e(K.EVTCHN_PENDING, 550, 1, 2, 1, 7)
    e(K.SCHED_RUNSTATE, 600, 0, 1, 1, RUN, BLOCK)
    e(K.SCHED_RUNSTATE, 1200, 1, 2, 0, RUN, OFF)
    return rec.to_dataframe()


def test_accessor_validates_columns() -> None:
    with pytest.raises(AttributeError, match="missing columns kind"):
        _ = pd.DataFrame({"t_ns": [], "cpu": [], "dom": [], "vcpu": []}).xen


def test_kind_keeps_only_that_kinds_columns() -> None:
    rs = _trace().xen.kind("sched.runstate")
    assert list(rs.columns) == ["t_ns", "cpu", "dom", "vcpu", "state", "prev_state"]
    assert rs["state"].dtype == np.int64
    assert len(rs) == 9
    calls = _trace().xen.kind("hcall.enter")
    assert list(calls.columns) == [
        "t_ns",
        "cpu",
        "dom",
        "vcpu",
        "nr",
        "arg0",
        "arg1",
        "arg2",
        "text",
    ]
    with pytest.raises(KeyError, match="unknown record kind 'sched.nope'"):
        _trace().xen.kind("sched.nope")


def test_synthetic_trace_is_in_time_order() -> None:
    assert _trace()["t_ns"].is_monotonic_increasing


def test_cpu_time_sums_running_intervals_and_closes_at_end() -> None:
    cpu = _trace().xen.per_domain_cpu_time(END)
    # dom1: vcpu0 0-100 and 150-300, vcpu1 600-1000 (open); dom2: 0-500, and the
    # record at 1200 lies past the end.
    assert cpu.to_dict() == {1: 100 + 150 + 400, 2: 500}
    assert cpu.index.name == "dom" and cpu.name == "cpu_time_ns"


def test_runstate_shares_sum_to_one_per_domain() -> None:
    shares = _trace().xen.runstate_shares(END)
    assert list(shares.columns) == ["running", "runnable", "blocked", "offline"]
    dom1_total = 1000 + 800
    assert shares.loc[1, "running"] == pytest.approx(650 / dom1_total)
    assert shares.loc[1, "runnable"] == pytest.approx(50 / dom1_total)
    assert shares.loc[1, "blocked"] == pytest.approx((700 + 400) / dom1_total)
    assert shares.loc[1, "offline"] == 0.0
    assert shares.loc[2].to_dict() == {
        "running": 0.5,
        "runnable": 0.0,
        "blocked": 0.0,
        "offline": 0.5,
    }
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)


def test_hcall_counts_by_domain_and_name() -> None:
    counts = _trace().xen.hcall_counts()
    assert counts.to_dict() == {
        (1, "event_channel_op"): 1,
        (1, "sched_op"): 2,
        (2, "#17"): 1,
    }


def test_event_counts_per_domain() -> None:
    ev = _trace().xen.event_counts()
    assert ev.loc[1].to_dict() == {"sent": 1, "pending": 0, "upcalls": 1, "handled": 0}
    assert ev.loc[2].to_dict() == {"sent": 0, "pending": 4, "upcalls": 2, "handled": 3}


def test_upcall_latency_from_each_pending_to_the_next_upcall() -> None:
    lat = _trace().xen.upcall_latency()
    # dom2 vcpu0: 400->430, 450->500, 460->500; dom2 vcpu1 never took its upcall.
    assert lat.tolist() == [30, 50, 40]
    assert lat.index.tolist() == [(2, 0), (2, 0), (2, 0)]
    assert lat.name == "upcall_latency_ns"


def test_latency_percentiles_interpolate_linearly() -> None:
    df = _trace()
    p = df.xen.latency_percentiles(df.xen.upcall_latency(), [50, 99])
    assert p.to_dict() == {50: 40.0, 99: pytest.approx(49.8)}
    empty = df.xen.latency_percentiles(pd.Series([], dtype="int64"))
    assert empty.isna().all() and list(empty.index) == [50, 99]
