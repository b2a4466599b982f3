"""Runs the export tests share: a small hand-made trace whose every interval is known, and a
real three-CPU run (ping-pong across two CPUs, a two-VCPU compute domain contending, a
compute domain alone on the third)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from framework.cli import main
from framework.runinfo import write_run_json
from framework.trace import Recorder
from framework.trace.ids import K
from framework.xen.public.vcpu import RUNSTATE_NAMES, Runstate

RUN, WAIT, BLOCK, OFF = Runstate.RUNNING, Runstate.RUNNABLE, Runstate.BLOCKED, Runstate.OFFLINE
TINY_END_NS = 10_000
TINY_DOMAINS = {0: "Domain-0", 1: "guest1", 2: "guest2"}


def write_tiny_run(directory: Path) -> None:
    """Two CPUs, ten microseconds:

    - d0v0 runs on CPU 0 from 0 to 5 us, then blocks (CPU 0 idles);
    - d1v0 runs on CPU 1 from 1 us to the end, with one Xen hypercall and one PAPR call;
    - d2v0 wakes at 2 us and waits on CPU 0's queue until it runs there from 6 us;
    - CPU 0 sends CPU 1 an IPI at 3 us; d1v0 takes an upcall at 4 us.
    """
    rec = Recorder(enums={"runstate": RUNSTATE_NAMES})
    e = rec.emit
    e(K.SCHED_RUNSTATE, 0, -1, 0, 0, WAIT, OFF)
    e(K.SCHED_WAKE, 0, -1, 0, 0, 1)
    e(K.SCHED_SWITCH, 0, 0, 0, 0, -1, -1)
    e(K.SCHED_RUNSTATE, 0, 0, 0, 0, RUN, WAIT)
    e(K.SCHED_RUNSTATE, 1_000, -1, 1, 0, WAIT, OFF)
    e(K.SCHED_WAKE, 1_000, -1, 1, 0, 1)
    e(K.SCHED_SWITCH, 1_000, 1, 1, 0, -1, -1)
    e(K.SCHED_RUNSTATE, 1_000, 1, 1, 0, RUN, WAIT)
    e(K.HCALL_ENTER, 1_500, 1, 1, 0, 8, 0, 16, 0x5A5A, text="H_ENTER")
    e(K.HCALL_ENTER, 2_000, 1, 1, 0, 29, 1, 0x1_0000_0002, -1, text="sched_op")
    e(K.SCHED_RUNSTATE, 2_000, -1, 2, 0, WAIT, OFF)
    e(K.SCHED_WAKE, 2_000, -1, 2, 0, 0)
    e(K.IPI_SEND, 3_000, 0, -1, -1, 1, 1)
    e(K.IPI_RECV, 3_000, 1, -1, -1, 1)
    e(K.EVTCHN_UPCALL, 4_000, 1, 1, 0, 1)
    e(K.SCHED_RUNSTATE, 5_000, 0, 0, 0, BLOCK, RUN)
    e(K.SCHED_BLOCK, 5_000, 0, 0, 0)
    e(K.SCHED_SWITCH, 5_000, 0, -1, -1, 0, 0)
    e(K.SCHED_SWITCH, 6_000, 0, 2, 0, -1, -1)
    e(K.SCHED_RUNSTATE, 6_000, 0, 2, 0, RUN, WAIT)
    rec.write(directory)
    write_run_json(
        directory,
        scenario_name="tiny",
        scenario_sha256="cd" * 32,
        seed=1,
        sim_ns=TINY_END_NS,
        wall_s=0.1,
        counts=rec.counts(),
        domains=TINY_DOMAINS,
    )


#: 40 ms on three CPUs: ping (CPU 0) and pong (CPU 1) bounce events, `busy` computes on two
#: VCPUs that contend with them and takes 1 kHz timer ticks, `solo` computes alone on CPU 2
#: (one interval, still open when the run ends).
MIX_SCENARIO = textwrap.dedent(
    """\
    name: export-mix
    seed: 3
    duration: 40ms
    machine:
      cpus: 3
    domains:
      - name: ping
        memory: 64MiB
        affinity: [0]
        workloads: [{kind: pingpong, peer: pong, role: ping}]
      - name: pong
        memory: 64MiB
        affinity: [1]
        workloads: [{kind: pingpong, peer: ping, role: pong}]
      - name: busy
        memory: 64MiB
        vcpus: 2
        workloads:
          - {kind: compute, vcpu: 0}
          - {kind: compute, vcpu: 1}
          - {kind: timer, hz: 1000, vcpu: 0}
      - name: solo
        memory: 64MiB
        affinity: [2]
        workloads: [{kind: compute}]
    """
)


def run_mix(directory: Path) -> Path:
    """Run MIX_SCENARIO with `xen970 run` into directory/run; the run directory."""
    scenario = directory / "export-mix.yaml"
    scenario.write_text(MIX_SCENARIO, encoding="utf-8")
    out = directory / "run"
    assert main(["run", str(scenario), "--out", str(out), "--quiet"]) == 0
    return out
