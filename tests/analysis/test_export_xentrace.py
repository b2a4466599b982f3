"""`analysis.export_xentrace`: the records Xen's xentrace would write, and what Xen's own
xenalyze makes of them (`--summary` per-domain run times against xen970's summary)."""

from __future__ import annotations

import glob
import io
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

import analysis.export_xentrace as xt
from analysis.run import load_run
from analysis.summary import summarize
from tests.analysis.export_runs import run_mix, write_tiny_run

IDLE = xt.IDLE_DOMAIN


def _decode(data: bytes) -> list[tuple[int, list[tuple[int, int, tuple[int, ...]]]]]:
    """(cpu, [(cycles, event, words)...]) per window, read the way xenalyze reads them."""
    windows = []
    offset = 0
    while offset < len(data):
        header, cpu, size = struct.unpack_from("<III", data, offset)
        assert header == xt.TRC_TRACE_CPU_CHANGE | (2 << 28), hex(header)
        offset += 12
        end = offset + size
        records = []
        while offset < end:
            (header,) = struct.unpack_from("<I", data, offset)
            assert header >> 31 == 1, "every record carries cycles"
            n = (header >> 28) & 7
            lo, hi, *words = struct.unpack_from(f"<II{n}I", data, offset + 4)
            records.append((hi << 32 | lo, header & 0x0FFFFFFF, tuple(words)))
            offset += 12 + 4 * n
        assert offset == end, "a window's size is the bytes of its records"
        windows.append((cpu, records))
    return windows


def _rs(old: int, new: int) -> int:
    return xt.TRC_SCHED_RUNSTATE_CHANGE | old << 8 | new << 4


def _w(dom: int, vcpu: int) -> tuple[int]:
    return (dom << 16 | vcpu,)


def _export(run_dir: Path, hz: int) -> bytes:
    out = io.BytesIO()
    written = xt.write_xentrace(load_run(run_dir), out, hz)
    assert written == len(out.getvalue())
    return out.getvalue()


def test_the_tiny_run_becomes_the_records_xen_writes(tmp_path: Path) -> None:
    """Hand-decoded, at 1 GHz (a cycle per ns): runstates (with the idle VCPUs' at each
    switch from or to idle), wakes, blocks, switches, only the Xen hypercall, and a
    continue-running record at the end for each VCPU still running."""
    write_tiny_run(tmp_path)
    running, runnable, blocked, offline = 0, 1, 2, 3
    hcall_word0 = 29 | 0x2 << 20 | 0x2 << 22 | 0x2 << 24
    cpu0 = [
        (1, _rs(offline, runnable), _w(0, 0)),
        (1, xt.TRC_SCHED_WAKE, (0, 0)),
        (1, xt.TRC_SCHED_SWITCH, (IDLE, 0, 0, 0)),
        (1, _rs(running, runnable), _w(IDLE, 0)),
        (1, _rs(runnable, running), _w(0, 0)),
        # d2v0's wake (on no CPU in the trace) goes to the CPU it runs on next; it follows
        # CPU 1's hypercall of the same tick, so a tick later keeps the trace's order.
        (2_001, _rs(offline, runnable), _w(2, 0)),
        (2_001, xt.TRC_SCHED_WAKE, (2, 0)),
        (5_000, _rs(running, blocked), _w(0, 0)),
        (5_000, xt.TRC_SCHED_BLOCK, (0, 0)),
        (5_000, xt.TRC_SCHED_SWITCH, (0, 0, IDLE, 0)),
        (5_000, _rs(runnable, running), _w(IDLE, 0)),
        (6_000, xt.TRC_SCHED_SWITCH, (IDLE, 0, 2, 0)),
        (6_000, _rs(running, runnable), _w(IDLE, 0)),
        (6_000, _rs(runnable, running), _w(2, 0)),
        (10_000, xt.TRC_SCHED_CONTINUE_RUNNING, _w(2, 0)),
    ]
    cpu1 = [
        (1_000, _rs(offline, runnable), _w(1, 0)),
        (1_000, xt.TRC_SCHED_WAKE, (1, 0)),
        (1_000, xt.TRC_SCHED_SWITCH, (IDLE, 1, 1, 0)),
        (1_000, _rs(running, runnable), _w(IDLE, 1)),
        (1_000, _rs(runnable, running), _w(1, 0)),
        (2_000, xt.TRC_PV_HYPERCALL_V2, (hcall_word0, 1, 0, 2, 1, 0xFFFFFFFF, 0xFFFFFFFF)),
        # The same tick as CPU 0's last record: again a tick later.
        (10_001, xt.TRC_SCHED_CONTINUE_RUNNING, _w(1, 0)),
    ]
    assert _decode(_export(tmp_path, 1_000_000_000)) == [(0, cpu0), (1, cpu1)]


def test_cycles_are_timebase_ticks(tmp_path: Path) -> None:
    write_tiny_run(tmp_path)
    windows = _decode(_export(tmp_path, 33_333_333))
    cycles = {cpu: [r[0] for r in records] for cpu, records in windows}
    # 6 us at 33.333333 MHz is 200 ticks; 1 us is 33.
    assert cycles[0][11] == 200 and cycles[1][0] == 33


def test_each_cpus_first_window_comes_before_any_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """xenalyze finds the CPUs by scanning windows up to the first repeated CPU."""
    write_tiny_run(tmp_path)
    whole = _decode(_export(tmp_path, 1_000_000_000))
    monkeypatch.setattr(xt, "WINDOW_RECORDS", 4)
    split = _decode(_export(tmp_path, 1_000_000_000))
    assert [cpu for cpu, _ in split] == [0, 1, 0, 1, 0, 0]
    for cpu, records in whole:
        assert [r for c, rs in split if c == cpu for r in rs] == records


def _xenalyze() -> str:
    """The xenalyze binary: Debian's xen-utils-common ships /usr/bin/xenalyze."""
    found = shutil.which("xenalyze") or next(iter(glob.glob("/usr/lib/xen-*/bin/xenalyze")), None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have xenalyze: .ci/run installs Debian's xen-utils-common")
        pytest.skip("xenalyze is not installed (Debian: apt-get install xen-utils-common)")
    return found


def _xenalyze_run_ns(summary: str, hz: int) -> dict[int, float]:
    """Per-domain running time (ns) from `xenalyze --summary`: the sum over the domain's
    VCPUs of count x mean cycles of their `running` line (xenalyze prints the mean cut to
    a whole cycle, so half a cycle is added back per interval)."""
    totals: dict[int, float] = {}
    dom, in_vcpu = -1, False
    for line in summary.splitlines():
        if m := re.match(r"\|-- Domain (\d+) --\|", line):
            dom, in_vcpu = int(m.group(1)), False
        elif re.match(r"-- v\d+ --", line):
            in_vcpu = True
        elif in_vcpu and (m := re.match(r"\s+running:\s+(\d+)\s+[\d.]+s\s+(\d+)", line)):
            count, mean = int(m.group(1)), int(m.group(2))
            totals[dom] = totals.get(dom, 0.0) + count * (mean + 0.5) / hz * 1e9
    return totals


@pytest.fixture(scope="module")
def mix_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_mix(tmp_path_factory.mktemp("xentrace-mix"))


def test_xenalyze_summary_run_times_agree_with_xen970_within_1_percent(
    mix_run: Path, tmp_path: Path
) -> None:
    xenalyze = _xenalyze()
    hz = xt.DEFAULT_TIMEBASE_HZ
    trace = tmp_path / "mix.xentrace"
    trace.write_bytes(_export(mix_run, hz))
    done = subprocess.run(
        [xenalyze, f"--cpu-hz={hz}", "--summary", str(trace)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert not re.search(r"FATAL|Strange|skew", done.stderr), done.stderr[-2000:]
    theirs = _xenalyze_run_ns(done.stdout, hz)
    run = load_run(mix_run)
    ours = summarize(run)["cpu_time_ms"] * 1e6
    names = run.domains
    assert set(theirs) - {IDLE} == set(names)
    for dom, ns in ours.items():
        assert ns > 0
        assert theirs[dom] == pytest.approx(ns, rel=0.01), names[dom]
    # The idle VCPUs fill what the domains leave of the three CPUs.
    assert sum(theirs.values()) == pytest.approx(3 * run.sim_ns, rel=0.01)
