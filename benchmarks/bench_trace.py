"""Cost of trace recording: run time with the recorder on (and parquet written) vs off.

Why: the trace is the simulator's product, so it must be cheap enough to leave on.
Target: median(on) / median(off) <= 1.15 for the quick-start scenario and for the
event-heavy ping-pong of `bench_events` (~26 records per round trip), where "on" includes
`Recorder.write` of trace.parquet; the figure is the larger of the two ratios. Runs
alternate on/off so drift in machine speed hits both sides alike; five of each, because a
single run on these machines now and then takes ~0.1 s longer for reasons outside the
simulator, and the median of three let one such run move the ratio by 0.1.
"""

from __future__ import annotations

import re
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks import bench_events
from benchmarks._common import BenchmarkError, BenchResult, bench_main, scenario, settle
from framework.simulation import Simulation

NAME = "trace"
TARGET = 1.15
REPEATS = 5
#: --quick (a smoke test, figures not meaningful): fewer runs of each.
QUICK_REPEATS = 3
QUICKSTART = Path(__file__).resolve().parents[1] / "scenarios" / "quickstart.yaml"


def scenario_text(duration: str) -> str:
    """scenarios/quickstart.yaml with its duration replaced."""
    text = QUICKSTART.read_text()
    new, n = re.subn(r"(?m)^duration:.*$", f"duration: {duration}", text)
    if n != 1:
        raise BenchmarkError(f"{QUICKSTART} has no single top-level `duration:` line")
    return new


def one_run(text: str, record: bool, out: Path) -> tuple[float, int, int]:
    """(wall s of run() [+ write], records, parquet bytes) for one fresh simulation."""
    sim = Simulation(scenario(text, NAME), record=record)
    settle()
    t0 = time.perf_counter()
    sim.run()
    size = 0
    if record:
        size = sim.rec.write(out).stat().st_size
    wall = time.perf_counter() - t0
    return wall, len(sim.rec), size


@dataclass
class Ratio:
    """Alternated on/off wall times of one scenario."""

    on: list[float]
    off: list[float]
    records: int
    size: int

    @property
    def figure(self) -> float:
        return statistics.median(self.on) / statistics.median(self.off)

    def lines(self, what: str) -> list[tuple[str, str]]:
        def series(xs: list[float]) -> str:
            return "median {:.3f} s of {}".format(
                statistics.median(xs), ", ".join(f"{x:.3f}" for x in xs)
            )

        return [
            (f"{what}: on/off", f"{self.figure:.3f}"),
            (f"{what}: recording on (run + write parquet)", series(self.on)),
            (f"{what}: recording off (run)", series(self.off)),
            (
                f"{what}: trace",
                f"{self.records:,} records, trace.parquet {self.size / 1024:.0f} KiB",
            ),
        ]


def alternate(text: str, tmp: Path, tag: str, repeats: int) -> Ratio:
    """`repeats` runs with the recorder on and as many off, alternated."""
    on: list[float] = []
    off: list[float] = []
    records = size = 0
    for i in range(repeats):
        wall, records, size = one_run(text, True, tmp / f"{tag}-on{i}")
        on.append(wall)
        wall, _, _ = one_run(text, False, tmp / f"{tag}-off{i}")
        off.append(wall)
    if records == 0:
        raise BenchmarkError(f"the recording run of {tag} produced no trace records")
    return Ratio(on, off, records, size)


def measure(quick: bool) -> BenchResult:
    """Alternate on/off runs of quick-start and of ping-pong; the worse ratio counts."""
    duration = "100ms" if quick else "1s"
    rounds = bench_events.QUICK_ROUNDS if quick else bench_events.ROUNDS
    pingpong = bench_events.scenario_text(
        rounds, bench_events.BASE_NS + rounds * bench_events.PER_ROUND_NS
    )
    with tempfile.TemporaryDirectory(prefix="xen970-bench-trace-") as tmp:
        repeats = QUICK_REPEATS if quick else REPEATS
        quickstart = alternate(scenario_text(duration), Path(tmp), "quickstart", repeats)
        events = alternate(pingpong, Path(tmp), "pingpong", repeats)
    return BenchResult(
        name=NAME,
        figure=max(quickstart.figure, events.figure),
        unit="x untraced run",
        target=TARGET,
        higher_is_better=False,
        baseline=f"same scenarios, record=False (median of {repeats}, alternated); the worse",
        details=[
            ("scenarios", f"quickstart.yaml for {duration}; bench_events, {rounds:,} rounds"),
            *quickstart.lines("quick-start"),
            *events.lines("ping-pong"),
        ],
    )


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main((__doc__ or NAME).splitlines()[0], measure, argv)


if __name__ == "__main__":
    sys.exit(main())
