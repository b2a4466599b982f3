"""The `xen970` command: validate a scenario, or run it and print a per-domain summary.

Exit codes: 0 success, 1 the simulation failed (a `SimulationError`, or any other
exception the simulator raised: its own bug), 2 the scenario or the command line is
wrong, 130 interrupted.  Errors are one line on stderr, never a traceback: a failed run
writes its traceback to `ERROR_LOG` in the run directory.  A guest's fault is not a
failure: it crashes that domain, and the run's trace and summary show it.  Nor is an
unexpected exception out of a hypercall handler: that simulator bug crashes the calling
domain, the run goes on, and the summary (stderr with --quiet) names it with its traceback
in `ERROR_LOG`; run.json lists it under `simulator_bugs`.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import framework
from framework.errors import ScenarioError, SimulationError, UsageError, fault_reason
from framework.runinfo import ERROR_LOG
from framework.scenario import load_scenario

if TYPE_CHECKING:
    from analysis.run import Run

__all__ = ["ERROR_LOG", "main"]


ProgressFn = Callable[[int, int], None]
_LOG_WIDTH: Final = 160


def _ignore_progress(sim_ns_done: int, sim_ns_total: int) -> None:
    """Progress sink when no bar is shown."""


@contextmanager
def _progress_bar(show: bool) -> Iterator[ProgressFn]:
    """A progress(sim_ns_done, sim_ns_total) callback driving a bar over simulated time."""
    if not show:
        yield _ignore_progress
        return
    columns = (
        TextColumn("simulating"),
        BarColumn(),
        TextColumn("{task.fields[sim_ms]:>10.1f} / {task.fields[total_ms]:.1f} ms simulated"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("run", total=None, sim_ms=0.0, total_ms=0.0)

        def update(sim_ns_done: int, sim_ns_total: int) -> None:
            bar.update(
                task,
                completed=sim_ns_done,
                total=sim_ns_total,
                sim_ms=sim_ns_done / 1e6,
                total_ms=sim_ns_total / 1e6,
            )

        yield update


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.1f}"
    return str(value)


def _finished_run(out_dir: Path) -> Run | None:
    """The run read back from its directory; None without a trace (`--no-trace`)."""
    from analysis.run import RUN_FILE, TRACE_FILE, load_run

    if not (out_dir / TRACE_FILE).is_file() or not (out_dir / RUN_FILE).is_file():
        return None
    return load_run(out_dir)


def _summary_table(out_dir: Path, run: Run | None = None) -> Table | None:
    """The per-domain summary of the run in out_dir (None without a trace).

    `run` is that run already loaded, so the tables share one read of the trace.
    """
    from analysis.summary import summarize

    run = run if run is not None else _finished_run(out_dir)
    if run is None:
        return None
    summary = summarize(run)
    table = Table(title=f"per-domain summary ({out_dir})")
    longest = max((len(name) for name in summary["domain"]), default=6)
    for i, column in enumerate(summary.columns):
        if i == 0:
            table.add_column(str(column), no_wrap=True, min_width=longest)
        else:
            table.add_column(str(column), justify="right")
    for row in summary.itertuples(index=False):
        table.add_row(*(_cell(v) for v in row))
    return table


# Trace kinds that make a run worth an I/O table.
_IO_KINDS: Final = ("blk.submit", "blk.complete", "net.tx", "net.rx", "net.drop")
_IO_COLUMNS: Final = (
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
)
_XVD_MAJOR: Final = 202  # Linux's major number for Xen virtual disks (xvd*), 16 minors per disk


def _vbd_name(dev: int) -> str:
    """`xvda`, `xvdb2`, ... for a Linux xvd device number, else `vbd/<number>`."""
    if dev >> 8 != _XVD_MAJOR:
        return f"vbd/{dev}"
    disk, partition = (dev & 0xFF) >> 4, dev & 0xF
    return f"xvd{chr(ord('a') + disk)}{partition or ''}"


def _io_table(out_dir: Path, run: Run | None = None) -> Table | None:
    """Per (domain, device) block and network figures; None without a trace or without I/O.

    `run` is the run in out_dir already loaded. Block rows fill IOPS, latency and MB/s;
    vif rows the received Mbit/s, packets sent and received, and drops.
    """
    from analysis.io import block_stats, net_stats

    run = run if run is not None else _finished_run(out_dir)
    if run is None or not run.trace["kind"].isin(_IO_KINDS).any():
        return None
    # (dom, 0 = block / 1 = network, dev) orders the rows; the cells follow "domain".
    rows: list[tuple[int, int, int, list[str]]] = []
    blk = block_stats(run.trace)
    for (dom, dev), b in zip(blk.index, blk.itertuples(index=False), strict=True):
        figures = [b.iops, b.lat_p50_us, b.lat_p99_us, b.mb_s]
        cells = [_vbd_name(int(dev)), *map(_cell, figures), "", "", "", ""]
        rows.append((int(dom), 0, int(dev), cells))
    net = net_stats(run.trace)
    for (dom, dev), n in zip(net.index, net.itertuples(index=False), strict=True):
        figures = [n.rx_mbit_s, int(n.tx_packets), int(n.rx_packets), int(n.drops)]
        cells = [f"vif/{dev}", "", "", "", "", *map(_cell, figures)]
        rows.append((int(dom), 1, int(dev), cells))
    rows.sort(key=lambda row: row[:3])
    table = Table(title=f"I/O ({out_dir})")
    for i, column in enumerate(_IO_COLUMNS):
        table.add_column(column, no_wrap=True, justify="left" if i < 2 else "right")
    names = run.domains
    for dom, _, _, cells in rows:
        table.add_row(names.get(dom, str(dom)), *cells)
    return table


def _validate(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)
    print(f"ok: {scenario.name}: {scenario.domain_count} domains, {scenario.vcpu_count} vcpus")
    return 0


def _out_dir(out: str | None, name: str) -> Path:
    """The run directory, created and checked writable before anything is simulated.

    A run writes several files into it, so `--out` must name a directory (existing or
    creatable): '' , an existing file or device (/dev/null) and an unwritable place are
    refused in one line rather than failing after the simulation.
    """
    if out == "":
        raise UsageError("xen970: --out: the run directory is empty ('')")
    out_dir = Path(out) if out is not None else Path("runs") / name
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"xen970: --out {out_dir}: exists and is not a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"xen970: --out {out_dir}: cannot create: {exc.strerror}") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise UsageError(f"xen970: --out {out_dir}: not writable")
    return out_dir


def _run(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)
    out_dir = _out_dir(args.out, scenario.name)
    from framework.simulation import run_scenario

    console = Console()
    if not console.is_terminal:
        console = Console(width=_LOG_WIDTH)  # a log file has no edge: do not squeeze
    show = not args.quiet and sys.stdout.isatty()
    (out_dir / ERROR_LOG).unlink(missing_ok=True)  # from an earlier run that failed
    try:
        with _progress_bar(show) as progress:
            result = run_scenario(scenario, out_dir, progress=progress, record=not args.no_trace)
    except ScenarioError:
        raise
    except SimulationError as failed:
        return _run_failed(out_dir, failed, str(failed))
    except Exception as exc:  # noqa: BLE001 - reported in one line, the traceback logged
        # Anything else is a simulator bug: say so, and where its traceback is.
        log = out_dir / ERROR_LOG
        return _run_failed(out_dir, exc, f"{fault_reason(exc)} (a bug; traceback in {log})")
    log = Path(result.out_dir) / ERROR_LOG
    bugs = [f"{bug}; traceback in {log}" for bug in result.bugs]
    if args.quiet:
        # Even --quiet says so: a workload that never moved makes the run's figures lie,
        # and a simulator bug crashed a domain.
        for line in [*(f"warning: {w}" for w in result.warnings), *bugs]:
            print(f"xen970: {line}", file=sys.stderr)
        return 0
    speed = result.sim_ns / 1e9 / result.wall_s if result.wall_s > 0 else math.inf
    console.print(
        f"{scenario.name}: simulated {result.sim_ns / 1e9:.3f} s in {result.wall_s:.2f} s "
        f"wall ({speed:.3g}x real time) -> {result.out_dir}"
    )
    out_dir = Path(result.out_dir)
    run = _finished_run(out_dir)
    for table in (_summary_table(out_dir, run), _io_table(out_dir, run)):
        if table is not None:
            console.print(table)
    for warning in result.warnings:
        console.print(f"[bold yellow]warning:[/] {warning}", highlight=False)
    for bug in bugs:
        console.print(bug, style="bold red", highlight=False, markup=False, soft_wrap=True)
    return 0


def _run_failed(out_dir: Path, exc: BaseException, message: str) -> int:
    """One line on stderr, the traceback in the run directory's error log; exit code 1."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / ERROR_LOG).write_text("".join(traceback.format_exception(exc)))
    one_line = message.replace("\n", " ")
    print(f"xen970: simulation failed: {one_line}", file=sys.stderr)
    return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xen970", description="Simulate Xen on IBM PowerPC 970 machines."
    )
    parser.add_argument("--version", action="version", version=framework.__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    validate = sub.add_parser("validate", help="check a scenario file and exit")
    validate.add_argument("scenario", help="scenario YAML file")
    validate.set_defaults(func=_validate)
    run = sub.add_parser("run", help="run a scenario and write a run directory")
    run.add_argument("scenario", help="scenario YAML file")
    run.add_argument("--out", help="run directory (default: runs/<scenario name>)")
    run.add_argument("--no-trace", action="store_true", help="do not record a trace")
    run.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    run.set_defaults(func=_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `xen970` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ScenarioError as exc:  # UsageError too
        print(exc, file=sys.stderr)
        return 2
    except SimulationError as exc:
        print(f"xen970: simulation failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("xen970: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    raise SystemExit(main())
