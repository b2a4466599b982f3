"""A guest's own workloads across xm save / xm restore (framework/guest/suspend.py): its
compute VCPU is saved mid-loop and goes on from there, its console lines and timer ticks
go on where they stopped. Checked from the save file and the run directory."""

from __future__ import annotations

from pathlib import Path

import analysis
from framework.guest.runtime import AREA_BASE, AREA_GPR, AREA_SUSP_SRR0, build_runtime
from framework.save_file import SaveReader
from framework.scenario.loader import load_scenario
from framework.simulation import run_scenario

SCENARIO = """name: compute-console-save
duration: 80ms
machine: {cpus: 2, memory: 1GiB}
domains:
  - name: guest
    memory: 64MiB
    workloads:
      - {kind: compute}
      - {kind: console, every: 2ms, count: 10, text: hello}
      - {kind: timer, hz: 1000}
timeline:
  - {at: 10ms, action: save, domain: guest, file: guest.save}
  - {at: 40ms, action: restore, file: guest.save}
"""


def _memory(path: Path, gpa: int, n: int) -> bytes:
    """`n` bytes of the saved guest's memory at `gpa`, read from the save file's batches."""
    reader = SaveReader(path)
    try:
        reader.header()
        for first, pages in reader.batches():
            data = bytearray(pages << 12)
            reader.readinto(memoryview(data))
            off = gpa - (first << 12)
            if 0 <= off < len(data):
                return bytes(data[off : off + n])
    finally:
        reader.close()
    raise AssertionError(f"{gpa:#x} not in the save file")


def test_compute_console_and_timer_go_on_from_where_the_save_stopped(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO)
    out = tmp_path / "run"
    run_scenario(load_scenario(path), out)
    df = analysis.read_trace(out / "trace.parquet").xen.wide()

    # The compute VCPU was interrupted inside its loop, its counter (r5) well along: the
    # kernel kept both in its own memory, so the restored VCPU returns there.
    area = _memory(out / "guest.save", AREA_BASE, 512)
    srr0 = int.from_bytes(area[AREA_SUSP_SRR0 : AREA_SUSP_SRR0 + 8], "big")
    rt = build_runtime()
    loop = rt.virt("compute_next")
    assert loop <= srr0 < loop + 16, hex(srr0)
    assert int.from_bytes(area[AREA_GPR + 8 * 5 : AREA_GPR + 8 * 6], "big") > 1_000_000

    new = int(df[df.kind == "dom.create"].dom.max())
    back = int(df[(df.text == "resume") & (df.dom == new)].t_ns.iloc[0])
    # Never blocked after the restore: the compute loop runs, between ticks and lines.
    states = df[(df.kind == "sched.runstate") & (df.dom == new) & (df.t_ns >= back)]
    assert not (states.state == 2).any()  # RUNSTATE_blocked
    ticks = df[(df.text == "timer.tick") & (df.dom == new)]
    assert len(ticks) >= 20 and ticks.t_ns.diff().dropna().max() < 2_000_000

    # Console lines: 1..10 once each, numbered on by the restored domain, all in the log.
    lines = df[df.text == "console.line"]
    assert list(lines.value) == list(range(1, 11))
    assert set(lines[lines.t_ns > back].dom) == {new}
    assert (lines.t_ns > back).sum() >= 4
    log = (out / "console" / "guest.log").read_text()
    assert log.count("hello") == 10, log
