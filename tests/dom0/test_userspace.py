"""dom0's user space plans the guests of a scenario: when each group is created."""

from __future__ import annotations

from framework.dom0.userspace import creation_plan
from framework.scenario import parse_scenario

PAIR = """
name: plan
duration: 1s
domains:
  - name: a
    memory: 64MiB
    start: 5ms
  - name: ping
    memory: 64MiB
    start: 2ms
    workloads: [{kind: pingpong, peer: pong, role: ping}]
  - name: pong
    memory: 64MiB
    start: 7ms
    workloads: [{kind: pingpong, peer: ping, role: pong}]
  - name: b
    memory: 64MiB
"""


def test_guests_are_grouped_by_start_time_in_time_order() -> None:
    plan = creation_plan(parse_scenario(PAIR))
    assert [t for t, _ in plan] == sorted(t for t, _ in plan)
    assert plan[0] == (0, [3])  # b starts at once
    assert (5_000_000, [0]) in plan


def test_a_pingpong_pair_is_built_together_at_the_later_start() -> None:
    plan = dict(creation_plan(parse_scenario(PAIR)))
    assert plan[7_000_000] == [1, 2]  # ping waits for pong: each needs the other's domid
    assert all(1 not in group for t, group in plan.items() if t != 7_000_000)
