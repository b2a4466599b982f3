"""`sim_events.timeout` behaves as SimPy's own Timeout for processes and callbacks."""

from __future__ import annotations

import pytest
import simpy

from framework import sim_events


def test_a_process_waiting_on_it_resumes_at_the_same_instant_and_order_as_timeout() -> None:
    log: list[tuple[str, int, object]] = []

    def proc(env: simpy.Environment, name: str, make: object) -> simpy.events.ProcessGenerator:
        for d in (5, 0, 7):
            value = yield make(env, d)  # type: ignore[operator]
            log.append((name, int(env.now), value))

    env = simpy.Environment()
    env.process(proc(env, "ours", sim_events.timeout))
    env.process(proc(env, "simpy", lambda e, d: e.timeout(d)))
    env.run()
    assert log == [
        ("ours", 5, None),
        ("simpy", 5, None),
        ("ours", 5, None),
        ("simpy", 5, None),
        ("ours", 12, None),
        ("simpy", 12, None),
    ]


def test_callbacks_run_when_it_fires_and_a_negative_delay_is_refused() -> None:
    env = simpy.Environment()
    fired: list[int] = []
    ev = sim_events.timeout(env, 30)
    assert ev.triggered and not ev.processed
    ev.callbacks.append(lambda e: fired.append(int(env.now)))
    env.run()
    assert fired == [30] and ev.processed and ev.ok and ev.value is None
    with pytest.raises(ValueError, match="cannot be negative"):
        sim_events.timeout(env, -1)
