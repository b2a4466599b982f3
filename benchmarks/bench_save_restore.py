"""Save and restore of a 1 GiB guest: wall time against plain file I/O, and simulated time.

Why: `xm save` / `xm restore` move the whole memory of a guest through dom0's 4 MiB buffer,
a SHA-256 and a file; this is what that costs beyond the bytes themselves. Target: the
wall time of the save plus the restore (which reads the file once, checking its SHA-256 as
it fills the domain) is <= 2x the
time plain Python takes to write the same number of bytes to a file and read them back,
measured in the same run. Also printed: the simulated time the save takes (dom0's copies,
charged per page as foreign mapping would cost), from the trace's `xend.saved`.

The save and the restore are timed by wrapping `save_domain` and `restore_domain` (the
whole toolstack work of each, file included) for this process only.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import analysis
from framework.dom0 import xm_save
from framework.scenario.loader import parse_scenario
from framework.simulation import run_scenario

TARGET = 2.0
SCENARIO = """
name: bench-save-restore
duration: 700ms
machine: {cpus: 2, memory: 4GiB}
domains:
  - {name: big, memory: 1GiB, rma: 64MiB, workloads: [{kind: timer, hz: 1000}]}
timeline:
  - {at: 10ms, action: save, domain: big, file: big.save}
  - {at: 600ms, action: restore, file: big.save}
"""


def _timed(fn, acc: list[float]):  # type: ignore[no-untyped-def]
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            acc.append(time.perf_counter() - t0)

    return wrapper


def plain_io(path: Path, nbytes: int) -> float:
    """Write `nbytes` to a file in 4 MiB pieces and read them back; seconds."""
    chunk = os.urandom(4 << 20)
    t0 = time.perf_counter()
    with path.open("wb") as f:
        left = nbytes
        while left > 0:
            f.write(chunk[: min(left, len(chunk))])
            left -= len(chunk)
    with path.open("rb") as f:
        while f.read(4 << 20):
            pass
    took = time.perf_counter() - t0
    path.unlink()
    return took


def main() -> int:
    saves: list[float] = []
    restores: list[float] = []
    xm_save.save_domain = _timed(xm_save.save_domain, saves)
    xm_save.restore_domain = _timed(xm_save.restore_domain, restores)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        run_scenario(parse_scenario(SCENARIO, "bench"), out)
        size = (out / "big.save").stat().st_size
        marks = analysis.read_trace(out / "trace.parquet", kinds=["guest.mark"]).xen.kind(
            "guest.mark"
        )
        saved = marks[marks.text == "xend.saved"]
        sim_save_ms = float(saved["value"].iloc[0]) / 1e6
        base = plain_io(Path(tmp) / "plain.bin", size)
    if not saves or not restores:
        print("bench_save_restore: the save or the restore did not run", file=sys.stderr)
        return 1
    ratio = (saves[0] + restores[0]) / base
    print(
        f"save_restore: 1 GiB guest, file {size / 2**30:.3f} GiB: save {saves[0]:.2f} s + "
        f"restore {restores[0]:.2f} s vs plain write+read {base:.2f} s = {ratio:.2f}x "
        f"(target <= {TARGET}x); simulated save {sim_save_ms:.1f} ms"
    )
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
