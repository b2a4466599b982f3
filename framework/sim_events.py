"""A delayed SimPy event made without `Timeout`'s per-call overhead.

Why: the simulator makes about two delayed events per timer tick and per network packet
(a slice's end, a VCPU timer, a link arrival). `env.timeout(d)` builds a bound method,
runs `Timeout.__init__` and `Environment.schedule` as Python frames: ~1.3 us each, a
tenth of a tick's wall time. `timeout` below makes the same thing from compiled code:
an `Event` already triggered with value None, scheduled `delay` from now at NORMAL
priority, exactly as `Timeout.__init__` does it (simpy 4). Processes and callbacks see
no difference.
"""

from __future__ import annotations

from typing import Any

import simpy
from simpy.core import NORMAL  # the priority Timeout events are scheduled with
from simpy.events import Event


def timeout(env: simpy.Environment, delay: int) -> Any:
    """An event that fires `delay` simulated ns from now with value None."""
    if delay < 0:
        raise ValueError(f"a timeout cannot be negative ({delay} ns)")
    ev = Event(env)
    ev._ok = True
    ev._value = None
    env.schedule(ev, NORMAL, delay)
    return ev
