"""Cost of trace recording: run time with the recorder on (and parquet written) vs off.

Why: the trace is the simulator's product, so it must be cheap enough to leave on.
Target: median(on) / median(off) <= 1.15 for the quick-start scenario, where "on"
includes `Recorder.write` of trace.parquet. Runs alternate on/off so drift in machine
speed hits both sides alike; five of each, because a single run on these machines now
and then takes ~0.1 s longer for reasons outside the simulator, and the median of three
let one such run move the ratio by 0.1.
"""

from __future__ import annotations

import re
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks._common import BenchmarkError, BenchResult, bench_main, scenario, settle
from framework.simulation import Simulation

NAME = "trace"
TARGET = 1.15
REPEATS = 5
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


def measure(quick: bool) -> BenchResult:
    """Alternate on/off runs REPEATS times each and compare the medians."""
    duration = "100ms" if quick else "1s"
    text = scenario_text(duration)
    on: list[float] = []
    off: list[float] = []
    records = size = 0
    with tempfile.TemporaryDirectory(prefix="xen970-bench-trace-") as tmp:
        for i in range(REPEATS):
            wall, records, size = one_run(text, True, Path(tmp) / f"on{i}")
            on.append(wall)
            wall, _, _ = one_run(text, False, Path(tmp) / f"off{i}")
            off.append(wall)
    if records == 0:
        raise BenchmarkError("the recording run produced no trace records")
    med_on, med_off = statistics.median(on), statistics.median(off)
    return BenchResult(
        name=NAME,
        figure=med_on / med_off,
        unit="x untraced run",
        target=TARGET,
        higher_is_better=False,
        baseline=f"same scenario, record=False (median of {REPEATS}, alternated)",
        details=[
            ("scenario", f"scenarios/quickstart.yaml with duration {duration}"),
            (
                "recording on (run + write parquet)",
                "median {:.3f} s of {}".format(med_on, ", ".join(f"{x:.3f}" for x in on)),
            ),
            (
                "recording off (run)",
                "median {:.3f} s of {}".format(med_off, ", ".join(f"{x:.3f}" for x in off)),
            ),
            ("trace", f"{records:,} records, trace.parquet {size / 1024:.0f} KiB"),
        ],
    )


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main((__doc__ or NAME).splitlines()[0], measure, argv)


if __name__ == "__main__":
    sys.exit(main())
