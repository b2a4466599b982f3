"""`analysis.xm`: xm list / vcpu-list / info rebuilt from a finished run agree with what
dom0's xm printed on the timeline (through hypercalls) at the same simulated time.

One column can legitimately differ: the state letters (and, with them, the CPU) of a VCPU
on another physical CPU whose runstate changed while dom0 was reading. xm reads each VCPU
with its own hypercall at its own instant and sees the other CPUs as of the current
synchronisation quantum (`machine.sync_quantum`); the analysis reads one instant, the
time of the `xm.view` record. Such a line must then be what the analysis gives at some
instant of that last quantum, and the Time(s) column agrees to its printed 0.1 s.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

import analysis
import analysis.export_xentrace as xt
from analysis.run import load_run
from framework.hw970.params import SYNC_QUANTUM_NS
from framework.scenario import parse_scenario
from framework.simulation import run_scenario
from tests.analysis.export_runs import write_tiny_run

MS = 1_000_000

SCENARIO = """
name: xm-views-agree
duration: 300ms
machine: {cpus: 2, memory: 1GiB}
domains:
  - {name: web, memory: 64MiB, vcpus: 2, workloads: [{kind: compute}, {kind: compute, vcpu: 1}]}
  - {name: db, memory: 64MiB, workloads: [{kind: timer, hz: 1000}, {kind: compute}]}
  - {name: tmp, memory: 64MiB, workloads: [{kind: compute}]}
  - {name: idle, memory: 80MiB, on_poweroff: preserve, workloads: [{kind: timer, hz: 100}]}
timeline:
  - {action: xm_list, at: 20ms}
  - {action: xm_vcpu_list, at: 20ms}
  - {action: xm_info, at: 20ms}
  - {action: pause, at: 60ms, domain: db}
  - {action: xm_list, at: 80ms}
  - {action: vcpu_set, at: 90ms, domain: web, vcpus: 1}
  - {action: xm_vcpu_list, at: 110ms}
  - {action: destroy, at: 120ms, domain: tmp}
  - {action: xm_list, at: 140ms}
  - {action: xm_info, at: 140ms}
  - {action: vcpu_pin, at: 150ms, domain: web, vcpu: 0, cpus: [1]}
  - {action: unpause, at: 160ms, domain: db}
  - {action: shutdown, at: 170ms, domain: idle}
  - {action: xm_list, at: 250ms}
  - {action: xm_vcpu_list, at: 250ms}
  - {action: xm_list, at: 260ms, domain: web}
  - {action: xm_vcpu_list, at: 260ms, domain: nope}
"""


@pytest.fixture(scope="module")
def views_run(tmp_path_factory: pytest.TempPathFactory) -> analysis.Run:
    out = tmp_path_factory.mktemp("xm-views")
    run_scenario(parse_scenario(SCENARIO, "xm-views-agree"), out)
    return load_run(out)


def _rebuild(run: analysis.Run, command: str, at_ns: int) -> str:
    words = command.split()
    domain = words[2] if len(words) > 2 else None
    if words[1] == "list":
        return analysis.xm_list(run, at_ns, domain)
    if words[1] == "vcpu-list":
        return analysis.xm_vcpu_list(run, at_ns, domain)
    assert words[1] == "info"
    return analysis.xm_info(run, at_ns)


def _last_quantum(run: analysis.Run, at_ns: int) -> list[int]:
    """Every instant of the quantum before `at_ns` at which some runstate changed."""
    t = run.trace.xen.kind("sched.runstate")["t_ns"].to_numpy(dtype="int64")
    changes = t[(t > at_ns - SYNC_QUANTUM_NS) & (t <= at_ns)]
    return sorted({at_ns - SYNC_QUANTUM_NS, *changes.tolist(), *(changes - 1).tolist()})


def test_every_view_on_the_timeline_is_what_the_analysis_gives_at_its_time(
    views_run: analysis.Run,
) -> None:
    views = analysis.recorded_xm_views(views_run)
    commands = list(views["command"])
    assert commands == [
        "xm list",
        "xm vcpu-list",
        "xm info",
        "xm list",
        "xm vcpu-list",
        "xm list",
        "xm info",
        "xm list",
        "xm vcpu-list",
        "xm list web",
        "xm vcpu-list nope",
    ]
    mid_read = 0
    for t_ns, command, printed in views.itertuples(index=False):
        ours = _rebuild(views_run, command, t_ns)
        if command == "xm info" or ours == printed:
            assert ours == printed, f"{command} at {t_ns} ns"
            continue
        theirs, mine = printed.splitlines(), ours.splitlines()
        assert len(theirs) == len(mine), f"{command} at {t_ns} ns:\n{printed}\n{ours}"
        earlier = [
            _rebuild(views_run, command, t).splitlines() for t in _last_quantum(views_run, t_ns)
        ]
        for i, (line, rebuilt) in enumerate(zip(theirs, mine, strict=True)):
            if line != rebuilt:
                mid_read += 1
                assert any(e[i] == line for e in earlier), f"{command} at {t_ns} ns: {line!r}"
    # Almost every line agrees at the view's own instant.
    assert mid_read <= 2


def _line(text: str, name: str, vcpu: int | None = None) -> list[str]:
    for line in text.splitlines()[1:]:
        words = line.split()
        if words[0] == name and (vcpu is None or words[2] == str(vcpu)):
            return words
    raise AssertionError(f"no line for {name} {vcpu} in\n{text}")


def test_the_views_follow_pause_vcpu_set_destroy_and_shutdown(views_run: analysis.Run) -> None:
    run = views_run
    ids = {name: dom for dom, name in run.domains.items()}
    paused = analysis.xm_list(run, 80 * MS)
    assert _line(paused, "db") == ["db", str(ids["db"]), "64", "1", "--p---", "0.0"]
    assert _line(paused, "idle")[2:4] == ["80", "1"]
    after_set = analysis.xm_vcpu_list(run, 110 * MS)
    assert _line(after_set, "web", 1)[3:5] == ["-", "--p"]
    assert _line(after_set, "web", 0)[-2:] == ["any", "cpu"]
    gone = analysis.xm_list(run, 140 * MS)
    assert "tmp" in analysis.xm_list(run, 119 * MS) and "tmp" not in gone
    assert _line(gone, "web")[3] == "1"  # one VCPU online after vcpu-set
    end = analysis.xm_vcpu_list(run)
    assert _line(end, "web", 0)[-1] == "1"  # pinned to CPU 1
    assert _line(analysis.xm_list(run), "idle")[4] == "---s--"
    assert _line(analysis.xm_list(run), "db")[4] != "--p---"  # unpaused


def test_time_is_running_time_cut_at_the_given_instant(views_run: analysis.Run) -> None:
    """web computes flat out on one CPU: its Time(s) grows with the time asked for."""
    run = views_run
    early = float(_line(analysis.xm_list(run, 60 * MS), "web")[5])
    late = float(_line(analysis.xm_list(run, 250 * MS), "web")[5])
    assert early < late and late >= 0.2
    assert _line(analysis.xm_list(run, 0), "Domain-0")[5] == "0.0"
    assert "web" not in analysis.xm_list(run, 0)  # not created yet


def test_xm_info_free_memory_gives_back_what_a_destroyed_guest_held(
    views_run: analysis.Run,
) -> None:
    def free(at: int) -> int:
        return int(_line(analysis.xm_info(views_run, at), "free_memory")[2])

    # tmp's 64 MiB, its hashed page table and its grant frames come back at its destroy.
    assert free(140 * MS) - free(119 * MS) >= 64
    info = analysis.xm_info(views_run)
    assert _line(info, "nr_cpus")[2] == "2"
    assert _line(info, "total_memory")[2] == "1024"


def test_a_run_without_the_machine_facts_is_refused_with_a_reason(
    views_run: analysis.Run,
) -> None:
    old = analysis.Run(trace=views_run.trace, meta={**views_run.meta, "machine": {}})
    with pytest.raises(analysis.XmViewError, match="no `machine`"):
        analysis.xm_info(old)
    assert analysis.xm_list(old).startswith("Name")  # the list needs only the trace


def test_the_xentrace_export_ticks_at_the_runs_own_timebase(tmp_path: Path) -> None:
    write_tiny_run(tmp_path)
    meta = json.loads((tmp_path / "run.json").read_text())
    base = io.BytesIO()
    xt.write_xentrace(load_run(tmp_path), base)  # no machine facts: 33.333333 MHz
    meta["machine"] = {"timebase_hz": 1_000_000_000}
    (tmp_path / "run.json").write_text(json.dumps(meta))
    run = load_run(tmp_path)
    assert xt.run_timebase_hz(run) == 1_000_000_000
    ns = io.BytesIO()
    xt.write_xentrace(run, ns)
    explicit = io.BytesIO()
    xt.write_xentrace(run, explicit, 1_000_000_000)
    assert ns.getvalue() == explicit.getvalue() != base.getvalue()


def test_a_simulated_run_records_its_clock_and_timebase(tmp_path: Path) -> None:
    text = "name: t\nduration: 1ms\nmachine: {clock: 1GHz, timebase: 25MHz}\n"
    run_scenario(parse_scenario(text, "t"), tmp_path)
    machine = load_run(tmp_path).meta["machine"]
    assert (machine["clock_hz"], machine["timebase_hz"]) == (1_000_000_000, 25_000_000)
    assert xt.run_timebase_hz(load_run(tmp_path)) == 25_000_000
