"""Windowed CPU time, runstate shares and their time series, against hand-computed values
on the synthetic run A (tests/analysis/synthetic_runs.py has its intervals)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import Run
from analysis.runstate import (
    cpu_share,
    cpu_share_series,
    cpu_time,
    runstate_intervals,
    runstate_names,
    runstate_series,
    runstate_shares,
    runstate_time,
)
from tests.analysis.synthetic_runs import run_a


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run_a(Path(tmp_path_factory.mktemp("run_a")))


def test_whole_run_cpu_time_by_name_and_by_id(run: Run) -> None:
    by_name = cpu_time(run)
    assert by_name.to_dict() == {"Domain-0": 0, "alpha": 650 + 180, "beta": 150 + 200}
    by_id = cpu_time(run, by="dom")
    assert by_id.to_dict() == {0: 0, 1: 830, 2: 350}


def test_window_clips_intervals_at_both_ends(run: Run) -> None:
    # [200, 600): alpha.v0 runs [200,300) + [450,600), alpha.v1 [520,600), beta [300,450).
    share = cpu_share(run, start=200, end=600)
    assert share.to_dict() == pytest.approx({"Domain-0": 0.0, "alpha": 0.825, "beta": 0.375})
    table = runstate_time(run, 200, 600, by="domain")
    assert table.loc["alpha"].to_dict() == {
        "running": 330,
        "runnable": 50 + 20,
        "blocked": 100 + 300,
        "offline": 0,
    }
    assert table.loc["beta"].to_dict() == {
        "running": 150,
        "runnable": 250,
        "blocked": 0,
        "offline": 0,
    }


def test_per_vcpu_shares(run: Run) -> None:
    share = cpu_share(run, 200, 600, by="vcpu")
    assert list(share.index.names) == ["domain", "vcpu"]
    assert share.to_dict() == pytest.approx(
        {("Domain-0", 0): 0.0, ("alpha", 0): 0.625, ("alpha", 1): 0.2, ("beta", 0): 0.375}
    )
    by_id = cpu_share(run, by=["dom", "vcpu"])
    assert by_id[(1, 1)] == pytest.approx(0.18)
    shares = runstate_shares(run, by="vcpu")
    assert shares.loc[("alpha", 0)].to_dict() == pytest.approx(
        {"running": 0.65, "runnable": 0.05, "blocked": 0.3, "offline": 0.0}
    )
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)


def test_window_outside_a_vcpus_activity_still_counts_it_blocked(run: Run) -> None:
    shares = runstate_shares(run, 0, 100, by="vcpu")
    assert shares.loc[("alpha", 1), "blocked"] == 1.0
    assert cpu_share(run, 0, 100, by="vcpu")[("alpha", 1)] == 0.0


def test_intervals_are_clipped_and_named(run: Run) -> None:
    iv = runstate_intervals(run, 420, 460)
    alpha0 = iv[(iv["domain"] == "alpha") & (iv["vcpu"] == 0)]
    assert alpha0[["state", "begin_ns", "end_ns", "ns"]].values.tolist() == [
        ["runnable", 420, 450, 30],
        ["running", 450, 460, 10],
    ]


def test_cpu_share_series_per_bin(run: Run) -> None:
    series = cpu_share_series(run, bin_ns=250)
    assert list(series.index) == [0, 250, 500, 750]
    assert series["alpha"].tolist() == pytest.approx([1.0, 0.4, 1.72, 0.2])
    assert series["beta"].tolist() == pytest.approx([0.0, 0.6, 0.0, 0.8])
    assert series["Domain-0"].tolist() == [0.0] * 4
    per_vcpu = cpu_share_series(run, bin_ns=250, by="vcpu")
    assert per_vcpu[("alpha", 1)].tolist() == pytest.approx([0.0, 0.0, 0.72, 0.0])


def test_series_short_last_bin_divides_by_its_own_length(run: Run) -> None:
    series = runstate_series(run, "runnable", bin_ns=300, start=300, end=1000)
    # bins [300,600) [600,900) [900,1000); beta runnable [450,800), alpha.v0 [400,450) + v1 [500,520)
    assert list(series.index) == [300, 600, 900]
    assert series["beta"].tolist() == pytest.approx([150 / 300, 200 / 300, 0.0])
    assert series["alpha"].tolist() == pytest.approx([(50 + 20) / 300, 0.0, 0.0])


def test_bad_window_and_grouping_are_refused(run: Run) -> None:
    with pytest.raises(ValueError, match="empty or negative time window"):
        cpu_share(run, 500, 500)
    with pytest.raises(ValueError, match="cannot group by"):
        cpu_share(run, by="cpu")
    with pytest.raises(ValueError, match="no runstate 'sleeping'"):
        runstate_series(run, "sleeping")
    assert isinstance(cpu_share(run), pd.Series)


def test_runstate_names_from_codes_or_names(run: Run) -> None:
    from_codes = runstate_names(run, pd.Series([0, 2, 1], dtype="int64"))
    assert from_codes.tolist() == ["running", "blocked", "runnable"]
    named = pd.Series(["blocked", "running"], dtype="category")
    assert runstate_names(run, named).tolist() == ["blocked", "running"]
