"""What xm create writes into a guest's devtree for its workloads, and the workload seeds."""

from __future__ import annotations

from framework.dom0.xm_create import stream_seed, workload_properties
from framework.scenario import parse_scenario
from framework.xen.public.devtree import workload_groups

GUEST = """
name: props
duration: 1s
domains:
  - name: g
    memory: 64MiB
    vcpus: 4
    workloads:
      - {kind: compute, vcpu: 2}
      - {kind: compute, vcpu: 0}
      - {kind: timer, hz: 250, vcpu: 1}
      - {kind: timer, hz: 1000, vcpu: 3}
      - {kind: timer, hz: 30, vcpu: 1}
      - {kind: console, every: 10ms, count: 3}
"""


def test_compute_timer_and_console_workloads_become_devtree_properties() -> None:
    loads = parse_scenario(GUEST).domains[0].workloads
    props = workload_properties(loads)
    assert props["compute-vcpus"] == [0, 2]  # in order
    # Each timer keeps its own rate and VCPU (a second timer's hz was once dropped).
    timers = workload_groups(props, "timer")
    assert sorted((t["vcpu"], t["hz"]) for t in timers.values()) == [(1, 30), (1, 250), (3, 1000)]
    console = {k: v for k, v in props.items() if k.startswith("console")}
    assert console, props
    assert "hello from g" in console.values()
    assert 10_000_000 in console.values() and 3 in console.values()


def test_an_idle_guest_has_no_workload_properties() -> None:
    text = "name: idle\nduration: 1s\ndomains:\n  - {name: g, memory: 64MiB}\n"
    assert workload_properties(parse_scenario(text).domains[0].workloads) == {}


def test_workload_seeds_depend_on_the_scenario_seed_and_where_they_run() -> None:
    a = stream_seed(1, "g", "xvda")
    assert a == stream_seed(1, "g", "xvda")  # deterministic
    assert (
        len(
            {
                a,
                stream_seed(2, "g", "xvda"),
                stream_seed(1, "h", "xvda"),
                stream_seed(1, "g", "vif0"),
            }
        )
        == 4
    )
    assert 0 <= a < 2**32
