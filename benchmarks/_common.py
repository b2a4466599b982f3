"""What every benchmark shares: the result record, timing helpers, CLI and the table.

Targets are compared with a figure measured in the same process as its reference, because
absolute speeds on shared machines vary far more than ratios do.
"""

from __future__ import annotations

import argparse
import bisect
import gc
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from framework.scenario import Scenario, parse_scenario
from framework.simulation import Simulation


class BenchmarkError(RuntimeError):
    """The simulation did not do the work the benchmark times, so no figure is valid."""


@dataclass
class BenchResult:
    """One benchmark's headline figure, its target and the numbers behind it."""

    name: str
    figure: float
    unit: str
    target: float
    higher_is_better: bool = True
    #: What the figure was compared against (said in the output so nobody has to guess).
    baseline: str = ""
    #: Supporting figures, printed below the table: (label, formatted value).
    details: list[tuple[str, str]] = field(default_factory=list)
    #: Wall seconds the whole benchmark took (setup and references included).
    elapsed_s: float = 0.0

    @property
    def passed(self) -> bool:
        if self.higher_is_better:
            return self.figure >= self.target
        return self.figure <= self.target

    @property
    def target_text(self) -> str:
        op = ">=" if self.higher_is_better else "<="
        return f"{op} {fmt(self.target)}"

    def as_json(self) -> dict[str, object]:
        out = asdict(self)
        out["passed"] = self.passed
        out["details"] = dict(self.details)
        return out


def fmt(x: float) -> str:
    """Readable number: thousands separators for big ones, 3 significant digits otherwise."""
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def scenario(text: str, source: str) -> Scenario:
    """Parse scenario YAML built by a benchmark (errors name the benchmark)."""
    return parse_scenario(text, f"<benchmark {source}>")


@dataclass
class TimedRun:
    """Wall time of `Simulation.run()` and the (sim_ns, wall_s) reached at each step."""

    wall_s: float
    steps: list[tuple[int, float]]

    def second_half_rate(self) -> float:
        """Simulated seconds per wall second over the second half of the steps.

        The first steps include building the guests (zeroing their memory inside dom0's
        domctls), so this shows the steady-state speed next to the whole-run figure.
        """
        if len(self.steps) < 2:
            return 0.0
        mid = self.steps[len(self.steps) // 2 - 1]
        end = self.steps[-1]
        wall = end[1] - mid[1]
        return (end[0] - mid[0]) / 1e9 / wall if wall > 0 else 0.0


def timed_run(sim: Simulation, on_step: Callable[[int], None] | None = None) -> TimedRun:
    """Run a built simulation and time `run()` alone (construction is excluded)."""
    steps: list[tuple[int, float]] = []
    t0 = time.perf_counter()

    def progress(t: int, _total: int) -> None:
        steps.append((t, time.perf_counter() - t0))
        if on_step is not None:
            on_step(t)

    sim.run(progress)
    return TimedRun(time.perf_counter() - t0, steps)


def settle() -> None:
    """Collect earlier runs' garbage before timing, so a run does not pay for another's."""
    gc.collect()


def parse_args(description: str, argv: Sequence[str] | None) -> argparse.Namespace:
    """The options every benchmark entry point takes."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument(
        "--quick",
        action="store_true",
        help="small sizes (a smoke test; the figures are not meaningful)",
    )
    ap.add_argument(
        "--json", metavar="PATH", type=Path, help="also write the results as JSON to PATH"
    )
    return ap.parse_args(argv)


def print_results(
    results: Sequence[BenchResult],
    errors: Sequence[tuple[str, str]] = (),
    *,
    quick: bool = False,
    console: Console | None = None,
) -> None:
    """The summary table (figure, target, pass/fail), then each benchmark's details."""
    con = console or Console()
    if console is None and not con.is_terminal:
        con = Console(width=140)  # piped or captured: do not squeeze the table into 80 columns
    title = "xen970 benchmarks" + (" (--quick: sizes too small for the targets)" if quick else "")
    table = Table(title=title)
    table.add_column("benchmark")
    table.add_column("measured", justify="right")
    table.add_column("unit")
    table.add_column("target", justify="right")
    table.add_column("result")
    table.add_column("compared with")
    for r in results:
        verdict = "[green]PASS[/green]" if r.passed else "[red]FAIL[/red]"
        table.add_row(r.name, fmt(r.figure), r.unit, r.target_text, verdict, r.baseline)
    for name, why in errors:
        table.add_row(name, "-", "", "", "[red]ERROR[/red]", why)
    con.print(table)
    for r in results:
        con.print(f"[bold]{r.name}[/bold] ({r.elapsed_s:.1f} s)")
        for label, value in r.details:
            con.print(f"  {label}: {value}", highlight=False, soft_wrap=True)


def write_json(
    path: Path, results: Sequence[BenchResult], errors: Sequence[tuple[str, str]], quick: bool
) -> None:
    """Machine-readable results, only where the user asked (never into the repository)."""
    doc = {
        "quick": quick,
        "results": [r.as_json() for r in results],
        "errors": [{"name": n, "error": e} for n, e in errors],
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")


def bench_main(
    description: str, measure: Callable[[bool], BenchResult], argv: Sequence[str] | None
) -> int:
    """Entry point of a single-benchmark module: 0 if its target is met, else 1."""
    args = parse_args(description, argv)
    t0 = time.perf_counter()
    result = measure(args.quick)
    result.elapsed_s = time.perf_counter() - t0
    print_results([result], quick=args.quick)
    if args.json is not None:
        write_json(args.json, [result], [], args.quick)
    return 0 if result.passed else 1


def window_wall_per_item(
    run: TimedRun, start_ns: int, item_ns: Sequence[int]
) -> tuple[float, int, int, int] | None:
    """Wall s per item between the first and last progress steps inside the work.

    `item_ns` are the sorted simulated times at which items (requests, packets) finished,
    `start_ns` when the work began. The window runs from the first step after `start_ns`
    to the last step at or before the last item, so the wall time spent booting (inside
    the first step) is left out. Returns (wall s per item, items, window start ns, window
    end ns), or None when the work spans fewer than two steps or no item falls inside.
    """
    if not item_ns:
        return None
    inside = [(t, w) for t, w in run.steps if start_ns < t <= item_ns[-1]]
    if len(inside) < 2:
        return None
    (t0, w0), (t1, w1) = inside[0], inside[-1]
    items = bisect.bisect_right(item_ns, t1) - bisect.bisect_right(item_ns, t0)
    if items == 0:
        return None
    return (w1 - w0) / items, items, t0, t1
