"""Each plot of `run.plot` checked by what it draws (axes, bars, lines, labels, data) on
synthetic run A, not just that it ran."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from analysis import Run
from analysis.plot import RUNSTATE_COLOURS, domain_colours
from tests.analysis.synthetic_runs import BLK_DEV, run_a

MS = 1e6  # ns per ms: the plots' time unit


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run_a(Path(tmp_path_factory.mktemp("run_a")))


def _bars(fig: Figure) -> dict[str, list[tuple[float, float, float]]]:
    """Gantt bars by legend-less label: (cpu row centre, begin ns, end ns) per bar."""
    out: dict[str, list[tuple[float, float, float]]] = {}
    for coll in fig.axes[0].collections:
        assert isinstance(coll, PolyCollection)
        for path in coll.get_paths():
            box = path.get_extents()
            bar = (round((box.y0 + box.y1) / 2, 6), round(box.x0 * MS), round(box.x1 * MS))
            out.setdefault(coll.get_label(), []).append(bar)
    return {k: sorted(v) for k, v in out.items()}


def test_gantt_one_bar_per_vcpu_interval_on_its_cpu(run: Run, tmp_path: Path) -> None:
    fig = run.plot.gantt()
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cpu0", "cpu1"]
    assert len(ax.collections) == 3  # (cpu0, alpha), (cpu0, beta), (cpu1, alpha)
    assert _bars(fig) == {
        "alpha": [(0.0, 0, 300), (0.0, 450, 800), (1.0, 520, 700)],
        "beta": [(0.0, 300, 450), (0.0, 800, 1000)],
    }
    labels = sorted(t.get_text() for t in ax.texts)
    assert labels == ["v0", "v0", "v0", "v0", "v1"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["alpha", "beta"]
    assert ax.get_xlabel() == "simulated time (ms)"
    fig.savefig(tmp_path / "gantt.png")
    assert (tmp_path / "gantt.png").stat().st_size > 1000


def test_gantt_window_clips_bars(run: Run) -> None:
    fig = run.plot.gantt(start=250, end=500)
    assert _bars(fig) == {"alpha": [(0.0, 250, 300), (0.0, 450, 500)], "beta": [(0.0, 300, 450)]}
    assert fig.axes[0].get_xlim() == pytest.approx((250 / MS, 500 / MS))


def test_domains_keep_their_colour_across_plots(run: Run) -> None:
    colours = domain_colours(run.domains.values())
    assert len(set(colours.values())) == 3
    gantt = run.plot.gantt()
    alpha_bars = [c for c in gantt.axes[0].collections if c.get_label() == "alpha"]
    assert tuple(alpha_bars[0].get_facecolor()[0]) == to_rgba(colours["alpha"])
    share = run.plot.cpu_share(bin_ns=250)
    alpha_line = next(ln for ln in share.axes[0].lines if ln.get_label() == "alpha")
    assert to_rgba(alpha_line.get_color()) == to_rgba(colours["alpha"])
    # Another run with these names gives them the same colours, whatever their ids.
    assert domain_colours(["beta", "alpha", "Domain-0"]) == colours


def test_cpu_share_one_line_per_group_with_the_series(run: Run) -> None:
    fig = run.plot.cpu_share(bin_ns=250)
    ax = fig.axes[0]
    assert [ln.get_label() for ln in ax.lines] == ["Domain-0", "alpha", "beta"]
    alpha = ax.lines[1]
    assert alpha.get_xdata() * MS == pytest.approx([0, 250, 500, 750, 1000])
    assert alpha.get_ydata() == pytest.approx([1.0, 0.4, 1.72, 0.2, 0.2])
    per_vcpu = run.plot.cpu_share(bin_ns=500, by="vcpu")
    assert [ln.get_label() for ln in per_vcpu.axes[0].lines] == [
        "Domain-0 v0",
        "alpha v0",
        "alpha v1",
        "beta v0",
    ]


def test_latency_cdf_panels_and_lines(run: Run) -> None:
    fig = run.plot.latency_cdf()
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["wake to run", "event rtt", "timer lateness", "io"]  # no upcalls
    wake, rtt, timer, io = fig.axes
    assert [ln.get_label() for ln in rtt.lines] == ["alpha", "beta"]
    assert rtt.lines[0].get_xdata() == pytest.approx([0.09, 0.1])  # µs, sorted
    assert rtt.lines[0].get_ydata() == pytest.approx([0.5, 1.0])
    assert [ln.get_label() for ln in wake.lines] == ["alpha"]
    assert len(io.lines) == 2 and len(timer.lines) == 1
    only = run.plot.latency_cdf(["upcall"])
    assert len(only.axes) == 1 and not only.axes[0].lines
    with pytest.raises(ValueError, match="no latency"):
        run.plot.latency_cdf(["nope"])


def test_io_throughput_one_line_per_device(run: Run) -> None:
    fig = run.plot.io_throughput(bin_ns=500)
    ax = fig.axes[0]
    assert [ln.get_label() for ln in ax.lines] == [f"alpha block {BLK_DEV}", "beta net 0"]
    assert ax.lines[0].get_ydata() == pytest.approx([8192.0, 16384.0, 16384.0])
    assert ax.lines[1].get_ydata() == pytest.approx([0.0, 2000.0, 2000.0])
    assert [ln.get_linestyle() for ln in ax.lines] == ["-", "--"]


def test_runstate_breakdown_stacked_bars(run: Run) -> None:
    fig = run.plot.runstate()
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Domain-0", "alpha", "beta"]
    assert len(ax.patches) == 3 * 4  # groups x runstates
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(RUNSTATE_COLOURS)
    widths = np.array([p.get_width() for p in ax.patches]).reshape(4, 3)  # state-major
    assert widths[:, 1] == pytest.approx([830 / 2000, 70 / 2000, 1100 / 2000, 0.0])
    assert widths.sum(axis=0) == pytest.approx([1.0, 1.0, 1.0])
    per_vcpu = run.plot.runstate(start=0, end=500, by="vcpu")
    assert len(per_vcpu.axes[0].patches) == 4 * 4
