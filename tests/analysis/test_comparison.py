"""analysis.compare on two synthetic runs whose domains have different ids: matched by
name, with hand-computed values and differences."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from analysis import Run, compare
from analysis.comparison import DOMAIN_METRICS, domain_metrics
from tests.analysis.synthetic_runs import run_a, run_b


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, Run]:
    base = Path(tmp_path_factory.mktemp("runs"))
    return run_a(base / "a"), run_b(base / "b")


def test_domain_metrics_of_one_run(runs: tuple[Run, Run]) -> None:
    metrics = domain_metrics(runs[0])
    assert list(metrics.columns) == list(DOMAIN_METRICS)
    assert list(metrics.index) == ["Domain-0", "alpha", "beta"]
    alpha = metrics.loc["alpha"]
    assert alpha["cpu_share"] == pytest.approx(0.83)
    assert alpha["events_sent"] == 3
    assert alpha["wake_p50_us"] == pytest.approx(0.035)  # median of 50 and 20 ns
    assert alpha["event_rtt_p50_us"] == pytest.approx(0.095)
    assert alpha["timer_late_p50_us"] == pytest.approx(0.0325)
    assert alpha["io_mb_s"] == pytest.approx((4096 + 8192) / 1e-6 / 1e6)
    assert metrics.loc["beta", "io_mb_s"] == pytest.approx(1000.0)
    windowed = domain_metrics(runs[0], 200, 600)
    assert windowed.loc["alpha", "cpu_share"] == pytest.approx(0.825)
    # completions at 350 and 560 fall in [200, 600)
    assert windowed.loc["alpha", "io_mb_s"] == pytest.approx((4096 + 8192) / 400e-9 / 1e6)


def test_compare_matches_domains_by_name_not_id(runs: tuple[Run, Run]) -> None:
    a, b = runs
    table = compare(a, b)
    assert list(table.columns) == ["a", "b", "diff", "rel_diff"]
    alpha = table.loc[("alpha", "cpu_share")]
    # alpha is dom 1 in run A and dom 2 in run B.
    assert alpha["a"] == pytest.approx(0.83)
    assert alpha["b"] == pytest.approx(0.5)
    assert alpha["diff"] == pytest.approx(-0.33)
    assert alpha["rel_diff"] == pytest.approx(-0.33 / 0.83)
    beta = table.loc[("beta", "cpu_share")]
    assert (beta["a"], beta["b"], beta["diff"]) == pytest.approx((0.35, 1.0, 0.65))
    assert table.loc[("beta", "running"), "b"] == 1.0


def test_domain_in_one_run_only_gets_nan_on_the_other_side(runs: tuple[Run, Run]) -> None:
    table = compare(*runs, labels=("before", "after"))
    assert list(table.index.get_level_values("domain").unique()) == [
        "Domain-0",
        "alpha",
        "beta",
        "gamma",
    ]
    gamma = table.loc[("gamma", "cpu_share")]
    assert math.isnan(gamma["before"]) and gamma["after"] == 0.0 and math.isnan(gamma["diff"])
    rel = table.loc[("Domain-0", "events_sent"), "rel_diff"]
    assert math.isnan(rel)  # 0 -> 0: no relative change


def test_compare_over_a_window(runs: tuple[Run, Run]) -> None:
    table = compare(*runs, start=200, end=600)
    assert table.loc[("alpha", "cpu_share"), "a"] == pytest.approx(0.825)
    assert table.loc[("alpha", "cpu_share"), "b"] == pytest.approx(300 / 400)


def test_compare_refuses_clashing_labels(runs: tuple[Run, Run]) -> None:
    with pytest.raises(ValueError, match="two distinct names"):
        compare(*runs, labels=("x", "x"))
