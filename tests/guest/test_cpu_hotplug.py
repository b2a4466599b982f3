"""VCPU hotplug (`xm vcpu-set`): xend's cpu/<n>/availability, the guest's VCPUOP_down/up."""

from __future__ import annotations

import pandas as pd

from framework.scenario import parse_scenario
from framework.simulation import Simulation

TEMPLATE = """
name: vcpu-set
duration: 50ms
machine: {{cpus: 2, memory: 1GiB}}
domains:
  - name: guest
    memory: 64MiB
    vcpus: 2
    workloads: [{workloads}]
timeline:
  - {{action: vcpu_set, at: 20ms, domain: guest, vcpus: 1}}
  - {{action: vcpu_set, at: 35ms, domain: guest, vcpus: 2}}
"""


def _run(workloads: str) -> pd.DataFrame:
    sim = Simulation(parse_scenario(TEMPLATE.format(workloads=workloads), "vcpu-set"))
    try:
        sim.run()
        return sim.rec.to_dataframe().xen.wide()
    finally:
        sim.close()


def _ticks(df: pd.DataFrame) -> pd.Series:
    return df[(df.kind == "guest.mark") & (df.text == "timer.tick") & (df.vcpu == 1)].t_ns


def test_a_blocked_vcpu_taken_down_comes_back_and_its_timer_pauses() -> None:
    """VCPU 1 only takes 1 kHz ticks (blocked between them) when it is taken down: it is
    offline until vcpu-set brings it back, then it ticks again, the 15 ms in between
    skipped rather than made up in a burst."""
    df = _run("{kind: timer, hz: 1000, vcpu: 1}")
    guest = df[df.dom == 1]
    downs = guest[(guest.kind == "vcpu.down") & (guest.vcpu == 1)]
    ups = guest[(guest.kind == "vcpu.up") & (guest.vcpu == 1)]
    assert len(downs) == 1 and 20e6 <= downs.t_ns.iloc[0] < 21e6
    assert len(ups) == 2 and 35e6 <= ups.t_ns.iloc[1] < 36e6  # boot, then vcpu-set 2
    ticks = _ticks(df)
    assert not ((ticks > 21e6) & (ticks < 35e6)).any()
    after = ticks[ticks > 35e6]
    assert len(after) >= 14  # it woke: before the fix a VCPU downed while blocked never did
    gaps = ticks.diff().dropna()
    assert (gaps < 1.1e6).sum() == len(gaps) - 1  # one long gap, no burst of short ones
    marks = guest[guest.kind == "guest.mark"].text.tolist()
    assert marks.count("cpu.offline") == 1 and marks.count("cpu.online") == 1


def test_a_single_vcpu_guest_does_not_watch_cpu() -> None:
    """Only a kernel with a VCPU it could take down registers the `cpu` watch, so
    uniprocessor guests boot exactly as before."""
    text = TEMPLATE.format(workloads="").replace("vcpus: 2\n", "vcpus: 1\n")
    text = text.split("timeline:")[0]
    sim = Simulation(parse_scenario(text, "up"))
    try:
        sim.run()
        df = sim.rec.to_dataframe().xen.wide()
    finally:
        sim.close()
    watches = df[(df.kind == "xs.request") & (df.dom == 1) & (df.xs_type == 4)]
    assert not watches.text.str.contains("cpu").any()
