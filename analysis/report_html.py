"""One self-contained HTML page of a run: the summary, the I/O table, the expectations and
the plots, embedded as base64 PNG data URLs, so that the file opens anywhere with no
network access and no other file (no script, no external style sheet or font).

>>> import analysis
>>> from analysis.report_html import write_report
>>> run = analysis.load_run("runs/quickstart")                          # doctest: +SKIP
>>> write_report(run, "runs/quickstart/report.html")                    # doctest: +SKIP
PosixPath('runs/quickstart/report.html')
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from matplotlib.figure import Figure

from analysis import io as io_metrics
from analysis.summary import stalled_workloads, summarize

if TYPE_CHECKING:
    from analysis.run import Run

__all__ = ["DeviceNamer", "render_report", "write_report"]

#: Names a block device number in the I/O table (the CLI passes Linux's xvd names).
DeviceNamer = Callable[[int], str]
_NS_PER_MS: Final = 1e6
#: The Gantt chart covers this much of the run from the moment every domain has started.
GANTT_SPAN_NS: Final = 5_000_000
#: Bin widths (ms) the time series choose from: about 40 bins over the run.
_NICE_MS: Final = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
_DPI: Final = 80
_STYLE: Final = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1200px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f0f0f0; }
.PASS { color: #1a7f37; font-weight: bold; } .FAIL { color: #c62828; font-weight: bold; }
figure { margin: 1em 0; } figcaption { font-size: 0.9em; color: #555; }
img { max-width: 100%; height: auto; }
"""


def _default_device_name(dev: int) -> str:
    return f"vbd {dev}"


def _e(value: object) -> str:
    return html.escape(str(value))


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.2f}"
    return _e(value)


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _png(fig: Figure) -> str:
    """The figure as a PNG data URL."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure_html(fig: Figure, caption: str) -> str:
    alt = _e(caption)
    return f'<figure><img src="{_png(fig)}" alt="{alt}"><figcaption>{alt}</figcaption></figure>'


def _bin_ns(run: Run) -> int:
    """A round bin width giving about 40 bins over the run."""
    target_ms = run.sim_ns / _NS_PER_MS / 40
    return int(next((ms for ms in _NICE_MS if ms >= target_ms), _NICE_MS[-1]) * _NS_PER_MS)


def _gantt_window(run: Run) -> tuple[int, int]:
    """GANTT_SPAN_NS from when the last domain started (all are running then)."""
    starts = run.trace.xen.kind("dom.start")["t_ns"]
    begin = int(starts.max()) if len(starts) else 0
    begin = min(begin, max(run.sim_ns - GANTT_SPAN_NS, 0))
    return begin, min(begin + GANTT_SPAN_NS, run.sim_ns)


def _summary_html(run: Run) -> str:
    summary = summarize(run)
    return _table(list(summary.columns), summary.itertuples(index=False))


def _io_html(run: Run, device_name: DeviceNamer) -> str:
    names = run.domains
    blk = io_metrics.block_stats(run.trace, run.sim_ns)
    net = io_metrics.net_stats(run.trace)
    if blk.empty and net.empty:
        return "<p>No virtual I/O in this run.</p>"
    rows: list[list[object]] = []
    for (dom, dev), b in zip(blk.index, blk.itertuples(index=False), strict=True):
        rows.append(
            [
                names.get(int(dom), str(dom)),
                device_name(int(dev)),
                b.iops,
                b.lat_p50_us,
                b.lat_p99_us,
                b.mb_s,
                "",
                "",
                "",
                "",
            ]
        )
    for (dom, dev), n in zip(net.index, net.itertuples(index=False), strict=True):
        rows.append(
            [
                names.get(int(dom), str(dom)),
                f"vif/{dev}",
                "",
                "",
                "",
                "",
                n.rx_mbit_s,
                int(n.tx_packets),
                int(n.rx_packets),
                int(n.drops),
            ]
        )
    header = [
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
    return _table(header, rows)


def _expectations_html(run: Run) -> str:
    checks = run.meta.get("expectations") or []
    outcome = run.meta.get("outcome")
    if not checks:
        return "<p>The scenario has no expectations (<code>expect:</code>).</p>"
    rows = [
        [
            c.get("name", ""),
            c.get("metric", ""),
            c.get("shown", ""),
            c.get("bound", ""),
            c.get("verdict", ""),
        ]
        for c in checks
    ]
    table = _table(["check", "metric", "measured", "bound", "verdict"], rows)
    for verdict in ("PASS", "FAIL"):
        table = table.replace(f"<td>{verdict}</td>", f'<td class="{verdict}">{verdict}</td>')
    head = f'<p>Outcome: <span class="{_e(outcome)}">{_e(outcome)}</span></p>' if outcome else ""
    return head + table


def _notes_html(run: Run) -> str:
    stalled = stalled_workloads(run)
    parts = []
    if len(stalled):
        parts.append(
            "<h3>Stalled workloads</h3>"
            + _table(list(stalled.columns), stalled.itertuples(index=False))
        )
    warnings = run.meta.get("warnings") or []
    if warnings:
        items = "".join(f"<li>{_e(w)}</li>" for w in warnings)
        parts.append(f"<h3>Warnings</h3><ul>{items}</ul>")
    bugs = run.meta.get("simulator_bugs") or []
    if bugs:
        items = "".join(f"<li>{_e(b)}</li>" for b in bugs)
        parts.append(f"<h3>Simulator bugs</h3><ul>{items}</ul>")
    return "".join(parts)


def _plots_html(run: Run) -> str:
    bin_ns = _bin_ns(run)
    lo, hi = _gantt_window(run)
    bin_ms = f"{bin_ns / _NS_PER_MS:g} ms"
    figures = [
        (
            run.plot.gantt(lo, hi),
            f"VCPUs on physical CPUs, {lo / _NS_PER_MS:.3f}–{hi / _NS_PER_MS:.3f} ms",
        ),
        (run.plot.cpu_share(bin_ns), f"CPU share per domain, per {bin_ms}"),
        (run.plot.runstate(by="vcpu"), "Runstate breakdown per VCPU, whole run"),
        (run.plot.latency_cdf(), "Latency distributions (CDF) per domain"),
    ]
    if run.trace["kind"].isin(["blk.complete", "net.rx"]).any():
        figures.append((run.plot.io_throughput(bin_ns), f"I/O throughput per {bin_ms}"))
    return "".join(_figure_html(fig, caption) for fig, caption in figures)


def _header_html(run: Run, title: str) -> str:
    meta = run.meta
    facts = [
        ("scenario", meta.get("scenario", "")),
        ("seed", meta.get("seed", "")),
        ("simulated", f"{run.sim_ns / _NS_PER_MS:g} ms"),
        ("wall time", f"{meta['wall_s']:.2f} s" if "wall_s" in meta else ""),
        ("records", f"{len(run.trace):,}"),
        ("domains", ", ".join(f"{name} ({dom})" for dom, name in run.domains.items())),
        ("versions", ", ".join(f"{k} {v}" for k, v in sorted(meta.get("versions", {}).items()))),
    ]
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts)
    return f"<h1>{_e(title)}</h1><table><tbody>{rows}</tbody></table>"


def render_report(
    run: Run, title: str | None = None, device_name: DeviceNamer = _default_device_name
) -> str:
    """The report page as an HTML string (UTF-8, no external resource).

    `device_name` names block devices by number in the I/O table.

    >>> page = render_report(run, title="quick start")                  # doctest: +SKIP
    >>> page.count("<img")                                              # doctest: +SKIP
    4
    """
    heading = title or f"xen970 run: {run.meta.get('scenario', '')}"
    sections = [
        _header_html(run, heading),
        "<h2>Summary</h2>" + _summary_html(run),
        "<h2>I/O</h2>" + _io_html(run, device_name),
        "<h2>Expectations</h2>" + _expectations_html(run),
        _notes_html(run),
        "<h2>Plots</h2>" + _plots_html(run),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(heading)}</title><style>{_STYLE}</style></head>"
        f"<body>{''.join(sections)}</body></html>\n"
    )


def write_report(
    run: Run,
    out: str | Path,
    title: str | None = None,
    device_name: DeviceNamer = _default_device_name,
) -> Path:
    """Write `render_report` to `out` (its directory must exist); returns the path."""
    path = Path(out)
    path.write_text(render_report(run, title, device_name), encoding="utf-8")
    return path
