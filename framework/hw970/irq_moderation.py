"""Interrupt moderation: how a device controller spaces the interrupts it raises.

Real controllers do not interrupt once per completion under load: a NIC throttles to a
maximum interrupt rate (e1000's InterruptThrottleRate, 20,000/s by default), and a disk
controller can coalesce completions (AHCI command completion coalescing: raise after
`count` completions or `timeout`). Each interrupt costs the host an event-channel upcall
and a context switch, so moderation is what lets one upcall handle a batch.

`IrqModerator` does both, in simulated time:

- throttle: after an interrupt, the next one is raised no earlier than `min_interval_ns`
  later (events in between are taken by that one);
- coalesce: while the device is still busy, completions gather until `count` of them are
  pending or the first has waited `timeout_ns`; a completion that leaves the device idle
  interrupts at once, so a lone request (queue depth 1) never waits.
"""

from __future__ import annotations

from collections.abc import Callable

import simpy

from framework.sim_events import timeout

__all__ = ["IrqModerator"]


class IrqModerator:
    """Decides when `raise_irq()` runs for the events a device reports with `event()`."""

    def __init__(
        self,
        env: simpy.Environment,
        raise_irq: Callable[[], None],
        *,
        min_interval_ns: int = 0,
        count: int = 1,
        timeout_ns: int = 0,
    ) -> None:
        if min_interval_ns < 0 or timeout_ns < 0:
            raise ValueError("interrupt moderation intervals must not be negative")
        if count < 1:
            raise ValueError(f"interrupt coalescing count {count} must be at least 1")
        self.env = env
        self.raise_irq = raise_irq
        self.min_interval_ns = min_interval_ns
        self.count = count
        self.timeout_ns = timeout_ns
        self.pending = 0
        self._first_pending = 0  # when the oldest pending event happened
        self._last_irq: int | None = None
        self._armed_for: int | None = None  # when the deferred interrupt fires
        self._generation = 0  # invalidates a deferred interrupt already taken
        # Counters.
        self.events = 0
        self.interrupts = 0

    def event(self, idle: bool = False) -> None:
        """The device finished something now; `idle` when nothing else is outstanding."""
        self.events += 1
        now = int(self.env.now)
        if not self.pending:
            self._first_pending = now
        self.pending += 1
        due = now
        if not idle and self.pending < self.count:
            due = self._first_pending + self.timeout_ns
        if self._last_irq is not None:
            due = max(due, self._last_irq + self.min_interval_ns)
        if due <= now:
            self._fire()
        elif self._armed_for is None or due < self._armed_for:
            self._arm(due, now)

    def _arm(self, due: int, now: int) -> None:
        self._generation += 1
        generation = self._generation
        self._armed_for = due
        ev = timeout(self.env, due - now)
        ev.callbacks.append(lambda _e: self._deferred(generation))

    def _deferred(self, generation: int) -> None:
        if generation == self._generation and self.pending:
            self._fire()

    def _fire(self) -> None:
        self._generation += 1  # any deferred interrupt is now moot
        self._armed_for = None
        self.pending = 0
        self._last_irq = int(self.env.now)
        self.interrupts += 1
        self.raise_irq()
