"""The `xen970` command: validate a scenario, or run it and print a per-domain summary.

Exit codes: 0 success, 1 the simulation failed (SimulationError), 2 the scenario or the
command line is wrong, 130 interrupted. Expected errors are one line on stderr, never a
traceback.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import framework
from framework.errors import ScenarioError, SimulationError
from framework.scenario import load_scenario

__all__ = ["main"]

ProgressFn = Callable[[int, int], None]
_LOG_WIDTH = 160


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


def _summary_table(out_dir: Path) -> Table | None:
    """The per-domain summary read back from the run directory (None without a trace)."""
    from analysis.run import RUN_FILE, TRACE_FILE
    from analysis.summary import summarize_dir

    if not (out_dir / TRACE_FILE).is_file() or not (out_dir / RUN_FILE).is_file():
        return None
    summary = summarize_dir(out_dir)
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


def _validate(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)
    print(f"ok: {scenario.name}: {scenario.domain_count} domains, {scenario.vcpu_count} vcpus")
    return 0


def _run(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)
    out_dir = Path(args.out) if args.out else Path("runs") / scenario.name
    from framework.simulation import run_scenario

    console = Console()
    if not console.is_terminal:
        console = Console(width=_LOG_WIDTH)  # a log file has no edge: do not squeeze
    show = not args.quiet and sys.stdout.isatty()
    with _progress_bar(show) as progress:
        result = run_scenario(scenario, out_dir, progress=progress, record=not args.no_trace)
    if args.quiet:
        return 0
    speed = result.sim_ns / 1e9 / result.wall_s if result.wall_s > 0 else math.inf
    console.print(
        f"{scenario.name}: simulated {result.sim_ns / 1e9:.3f} s in {result.wall_s:.2f} s "
        f"wall ({speed:.3g}x real time) -> {result.out_dir}"
    )
    table = _summary_table(Path(result.out_dir))
    if table is not None:
        console.print(table)
    return 0


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
    except ScenarioError as exc:
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
