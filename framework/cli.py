"""The `xen970` command: validate a scenario, or run it and print a per-domain summary.

Exit codes: 0 success, 1 the run failed (a `SimulationError`, any other exception the
simulator raised: its own bug, or the host refused something: memory, a file, a write) or
one of the scenario's `expect` checks failed, 2 the scenario or the command line is wrong,
130 interrupted.  Errors are one line on stderr of at most MAX_LINE characters, never a
traceback: a failed run writes its traceback to `ERROR_LOG` in the run directory.  A
guest's fault is not a failure: it crashes that domain, and the run's trace and summary
show it.  Nor is an unexpected exception out of a hypercall handler: that simulator bug
crashes the calling domain, the run goes on, and the summary (stderr with --quiet) names
it with its traceback in `ERROR_LOG`; run.json lists it under `simulator_bugs`.

A run directory holds one run: `run` refuses one that holds anything, unless `--force`,
which empties an earlier run's directory first (see `framework.runinfo.claim_run_dir`).
"""

from __future__ import annotations

import argparse
import io
import math
import mmap
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final, NoReturn

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import framework
from framework.cli_runs import add_export_command, add_report_command, vbd_name
from framework.errors import ScenarioError, SimulationError, UnitError, UsageError, fault_reason
from framework.runinfo import ERROR_LOG, claim_run_dir
from framework.scenario import Scenario, load_scenario
from framework.scenario.limits import memory_ranges
from framework.units import format_size, parse_duration

if TYPE_CHECKING:
    from analysis.expectations import CheckResult
    from analysis.run import Run

__all__ = ["ERROR_LOG", "main"]


ProgressFn = Callable[[int, int], None]
_LOG_WIDTH: Final = 160
#: Longest error line: a message that echoes a long path or value is cut to this.
MAX_LINE: Final = 300


def _one_line(message: str) -> str:
    """`message` as one printable line of at most MAX_LINE characters."""
    text = message.encode("utf-8", "backslashreplace").decode("utf-8")
    text = " ".join(text.splitlines())
    return text if len(text) <= MAX_LINE else text[: MAX_LINE - 3] + "..."


def _error(message: str) -> None:
    print(_one_line(message), file=sys.stderr)


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
        cells = [vbd_name(int(dev)), *map(_cell, figures), "", "", "", ""]
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
    for warning in scenario.load_warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _out_dir(out: str | None, scenario: Scenario, force: bool) -> Path:
    """The run directory, made this run's own before anything is simulated.

    `--out` must name a new or empty directory, or with `--force` an earlier run's: '' ,
    an existing file or device (/dev/null), an unwritable place and a directory holding
    anything else are refused in one line rather than failing (or mixing two runs) later.
    """
    if out == "":
        raise UsageError("xen970: --out: the run directory is empty ('')")
    out_dir = Path(out) if out is not None else Path("runs") / scenario.name
    images = [
        path
        for d in scenario.domains
        for vbd in d.vbds
        if (path := scenario.image_path(vbd)) is not None
    ]
    claim_run_dir(out_dir, force=force, keep=images)
    return out_dir


def _collection_dir(out: str | None, default: Path) -> Path:
    """Where `test` and `sweep` put their run directories: an existing directory is
    reused (a sweep resumes there; `test` replaces only its own earlier runs), anything
    else is refused in one line before any work starts."""
    if out == "":
        raise UsageError("xen970: --out: the directory is empty ('')")
    path = Path(out) if out is not None else default
    if path.exists() and not path.is_dir():
        raise UsageError(f"xen970: --out {path}: exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"xen970: --out {path}: cannot create: {exc.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"xen970: --out {path}: not writable")
    return path


def _host_cannot_map(scenario: Scenario) -> str | None:
    """Why this host cannot map the machine's memory (as the run will: one anonymous
    mapping up to the top of RAM), or None if it can; nothing is touched."""
    base, size = memory_ranges(scenario.machine.memory)[-1]
    try:
        mmap.mmap(-1, base + size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS).close()
    except (OSError, OverflowError, MemoryError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else type(exc).__name__
        return (
            f"xen970: {scenario.where(('machine', 'memory'))}: this host cannot map "
            f"{format_size(scenario.machine.memory)} of machine memory ({why}); "
            "give the machine less memory"
        )
    return None


def _run(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)
    refused = _host_cannot_map(scenario)
    if refused is not None:
        _error(refused)
        return 1
    out_dir = _out_dir(args.out, scenario, args.force)
    from framework.simulation import run_scenario

    console = Console()
    if not console.is_terminal:
        console = Console(width=_LOG_WIDTH)  # a log file has no edge: do not squeeze
    show = not args.quiet and sys.stdout.isatty()
    try:
        with _progress_bar(show) as progress:
            result = run_scenario(scenario, out_dir, progress=progress, record=not args.no_trace)
    except ScenarioError:
        raise
    except SimulationError as failed:
        return _run_failed(out_dir, failed, str(failed))
    except (OSError, MemoryError) as exc:
        return _run_failed(out_dir, exc, f"the host refused: {_host_error(exc)}")
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
        return _verdict(result.checks, result.outcome, console, quiet=True)
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
    return _verdict(result.checks, result.outcome, console, quiet=False)


def _verdict(
    checks: Sequence[CheckResult], outcome: str | None, console: Console, *, quiet: bool
) -> int:
    """Show the checks and the outcome; exit code 1 when the checks failed (not XFAIL)."""
    if outcome is None:
        return 0
    if not quiet:
        table = Table(title=f"expectations: {outcome}")
        for column in ("check", "measured", "expected", "verdict"):
            table.add_column(column, overflow="fold")
        for c in checks:
            colour = "green" if c.verdict == "PASS" else "red"
            table.add_row(c.name, c.shown, c.bound, f"[{colour}]{c.verdict}[/]")
        console.print(table)
    if outcome == "FAIL":
        for c in checks:
            if c.verdict == "FAIL":
                print(
                    f"xen970: expectation failed: {c.name}: measured {c.shown}, expected {c.bound}",
                    file=sys.stderr,
                )
        return 1
    return 0


def _test(args: argparse.Namespace) -> int:
    """`xen970 test`: the suite runner (framework.suite), imported when asked for."""
    from framework.suite.runner import SuiteOptions, run_suite

    options = SuiteOptions(
        paths=tuple(args.paths),
        out=_collection_dir(args.out, Path("runs") / "test"),
        junit=Path(args.junit) if args.junit else None,
        timeout_s=_timeout_s("--timeout", args.timeout),
        scheduler=args.scheduler,
        workers=args.workers,
        update_fingerprints=args.update_fingerprints,
    )
    return run_suite(options)


def _timeout_s(option: str, text: str) -> float:
    try:
        ns = parse_duration(text)
    except UnitError as exc:
        raise UsageError(f"xen970: {option}: {exc}") from None
    if ns <= 0:
        raise UsageError(f"xen970: {option} must be longer than 0s")
    return ns / 1e9


def _sweep(args: argparse.Namespace) -> int:
    """`xen970 sweep`: parameter studies (framework.suite.sweep), imported when asked for."""
    from framework.suite.sweep import SweepOptions, run_sweep

    scenario = load_scenario(args.scenario)
    options = SweepOptions(
        scenario=Path(args.scenario),
        sets=tuple(args.set),
        seeds=args.seeds,
        out=_collection_dir(args.out, Path("runs") / f"sweep-{scenario.name}"),
        timeout_s=_timeout_s("--timeout", args.timeout),
        scheduler=args.scheduler,
        workers=args.workers,
    )
    return run_sweep(options)


def _check(args: argparse.Namespace) -> int:
    """`xen970 check RUN_DIR`: judge a finished run's checks again from its files alone."""
    from analysis.expectations import check_run_dir

    directory = Path(args.run_dir)
    try:
        checks, outcome = check_run_dir(directory)
    except FileNotFoundError as exc:
        raise UsageError(f"xen970: {exc}") from None
    return _verdict(checks, outcome if checks else None, Console(), quiet=args.quiet)


def _run_failed(out_dir: Path, exc: BaseException, message: str) -> int:
    """One line on stderr, the traceback in the run directory's error log; exit code 1."""
    try:
        (out_dir / ERROR_LOG).write_text("".join(traceback.format_exception(exc)))
    except OSError as log_failed:  # the disk that failed the run may refuse the log too
        message += f" (and {out_dir / ERROR_LOG} could not be written: {log_failed.strerror})"
    _error(f"xen970: simulation failed: {message}")
    return 1


def _host_error(exc: BaseException) -> str:
    """An OSError or MemoryError in words: what the host refused, and on which file."""
    if isinstance(exc, MemoryError):
        return "out of memory (MemoryError)"
    assert isinstance(exc, OSError)
    what = exc.strerror or str(exc) or type(exc).__name__
    return f"{what}: {exc.filename}" if exc.filename is not None else what


class _Parser(argparse.ArgumentParser):
    """argparse, whose usage errors are one line too (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, _one_line(f"{self.prog}: error: {message} (see {self.prog} --help)") + "\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="xen970", description="Simulate Xen on IBM PowerPC 970 machines.")
    parser.add_argument("--version", action="version", version=framework.__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    validate = sub.add_parser("validate", help="check a scenario file and exit")
    validate.add_argument("scenario", help="scenario YAML file")
    validate.set_defaults(func=_validate)
    run = sub.add_parser("run", help="run a scenario and write a run directory")
    run.add_argument("scenario", help="scenario YAML file")
    run.add_argument("--out", help="run directory, new or empty (default: runs/<scenario name>)")
    run.add_argument(
        "--force",
        action="store_true",
        help="empty --out first if it is an earlier run's directory (never anything else)",
    )
    run.add_argument("--no-trace", action="store_true", help="do not record a trace")
    run.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    run.set_defaults(func=_run)
    test = sub.add_parser(
        "test", help="run every scenario with expect/xfail/skip under PATHs (on Dask)"
    )
    test.add_argument("paths", nargs="+", metavar="PATH", help="scenario files or directories")
    test.add_argument("--out", default="runs/test", help="where run directories go (runs/test)")
    test.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report")
    test.add_argument("--timeout", default="60s", help="wall-time limit per scenario (default 60s)")
    test.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler")
    test.add_argument("--workers", type=int, help="local worker processes (default: cores)")
    test.add_argument(
        "--update-fingerprints",
        action="store_true",
        help="write each fingerprint check's measured value into its scenario file",
    )
    test.set_defaults(func=_test)
    sweep = sub.add_parser("sweep", help="run a scenario over parameter values and seeds (on Dask)")
    sweep.add_argument("scenario", help="scenario YAML file")
    sweep.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="dotted key into the scenario (list items by index or name) and its values",
    )
    sweep.add_argument("--seeds", help="N (seeds 0..N-1) or A-B (default: the file's seed)")
    sweep.add_argument("--out", help="sweep directory (default runs/sweep-<scenario name>)")
    sweep.add_argument("--timeout", default="3600s", help="wall-time limit per run (default 3600s)")
    sweep.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler")
    sweep.add_argument("--workers", type=int, help="local worker processes (default: cores)")
    sweep.set_defaults(func=_sweep)
    check = sub.add_parser("check", help="judge a finished run's expect checks again")
    check.add_argument("run_dir", help="a run directory (trace.parquet and run.json)")
    check.add_argument("--quiet", action="store_true", help="only the failures, on stderr")
    check.set_defaults(func=_check)
    add_export_command(sub)
    add_report_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `xen970` console script; returns the exit code."""
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")  # a path that is not UTF-8
    args = _parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ScenarioError as exc:  # UsageError too
        _error(str(exc))
        return 2
    except SimulationError as exc:
        _error(f"xen970: simulation failed: {exc}")
        return 1
    except KeyboardInterrupt:
        _error("xen970: interrupted")
        return 130
    except RecursionError:
        _error("xen970: recursion too deep (a bug: please report the scenario)")
        return 1
    except (OSError, MemoryError) as exc:
        if isinstance(exc, BrokenPipeError):
            # stdout went away (`| head`): say nothing more to it, not even at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            _error("xen970: the output was not all written: its reader closed the pipe")
            return 1
        _error(f"xen970: the host refused: {_host_error(exc)}")
        return 1
    return code


if __name__ == "__main__":
    raise SystemExit(main())
