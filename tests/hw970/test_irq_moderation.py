"""Interrupt moderation in simulated time: throttling spaces interrupts, coalescing
gathers completions while the device is busy but never delays a lone one."""

from __future__ import annotations

import pytest
import simpy

from framework.hw970.irq_moderation import IrqModerator


def _run(mod_kwargs: dict[str, int], events: list[tuple[int, bool]]) -> list[int]:
    """Report `events` (time ns, idle) and return the instants interrupts were raised."""
    env = simpy.Environment()
    raised: list[int] = []
    mod = IrqModerator(env, lambda: raised.append(int(env.now)), **mod_kwargs)
    for at, idle in events:
        env.timeout(at).callbacks.append(lambda _e, idle=idle: mod.event(idle=idle))
    env.run()
    assert mod.events == len(events) and mod.interrupts == len(raised)
    return raised


def test_without_moderation_every_event_interrupts_at_once() -> None:
    assert _run({}, [(10, False), (20, False), (20, True)]) == [10, 20, 20]


def test_throttle_keeps_interrupts_an_interval_apart() -> None:
    # 50 ns interval: 0 fires; 10 and 30 wait for 50; 120 is free again; 130 waits to 170.
    events = [(0, False), (10, False), (30, False), (120, False), (130, False)]
    assert _run({"min_interval_ns": 50}, events) == [0, 50, 120, 170]


def test_coalescing_fires_at_the_count_or_the_timeout() -> None:
    # count 3, timeout 100: 0,10,20 -> one interrupt at 20; 200 alone -> at 300 (timeout).
    events = [(0, False), (10, False), (20, False), (200, False)]
    assert _run({"count": 3, "timeout_ns": 100}, events) == [20, 300]


def test_a_completion_that_leaves_the_device_idle_interrupts_at_once() -> None:
    events = [(0, False), (40, True), (500, True)]
    assert _run({"count": 8, "timeout_ns": 1000}, events) == [40, 500]


def test_bad_parameters_are_refused() -> None:
    env = simpy.Environment()
    with pytest.raises(ValueError, match="count 0 must be at least 1"):
        IrqModerator(env, lambda: None, count=0)
    with pytest.raises(ValueError, match="must not be negative"):
        IrqModerator(env, lambda: None, min_interval_ns=-1)
