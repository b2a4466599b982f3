"""The optional seeded noise model (`machine.jitter`): replications that differ.

Why: one seed gives one byte-identical trace, so a single run shows no spread. With
jitter on, each seed gives a different and equally valid run, and a figure taken over
several seeds gets a confidence interval. The noise stands for what a real box adds and
the cost model leaves out (interrupt latency, cache state behind Xen's own work):

- `timer_ns`: each VCPU timer (set_timer_op's VIRQ_TIMER) fires later by an exponentially
  distributed delay with this mean (interrupt latency has a long right tail);
- `ipi_ns`: each IPI reaches its CPU later by an exponential delay with this mean;
- `cost_percent`: Xen's work at each slice boundary (tick, schedule, context switch)
  costs its table figure times a factor drawn uniformly from [1 - p/100, 1 + p/100].

All zero (the default) draws nothing, so runs without jitter are unchanged. The one
generator is a `random.Random` seeded from the scenario seed, made here and nowhere else.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Jitter", "JitterParams"]


@dataclass(frozen=True)
class JitterParams:
    """How much noise: means of the exponential delays (ns), the cost spread (percent)."""

    timer_ns: int = 0
    ipi_ns: int = 0
    cost_percent: int = 0

    @property
    def enabled(self) -> bool:
        return bool(self.timer_ns or self.ipi_ns or self.cost_percent)


class Jitter:
    """The simulation's noise source: one generator seeded from the scenario seed."""

    def __init__(self, params: JitterParams, seed: int) -> None:
        self.params = params
        # A string seed is hashed with SHA-512 by random.Random: stable across runs and
        # Python versions, and independent of the workloads' own streams.
        self.rng = random.Random(f"{seed}:jitter")

    def timer_delay_ns(self) -> int:
        """Extra latency of one VCPU timer interrupt (0 when timer jitter is off)."""
        mean = self.params.timer_ns
        return int(self.rng.expovariate(1.0 / mean)) if mean else 0

    def ipi_delay_ns(self) -> int:
        """Extra latency of one IPI (0 when IPI jitter is off)."""
        mean = self.params.ipi_ns
        return int(self.rng.expovariate(1.0 / mean)) if mean else 0

    def scale_cost(self, cycles: int) -> int:
        """Xen's work of `cycles` at one slice boundary, varied by +-cost_percent."""
        p = self.params.cost_percent
        if not p or not cycles:
            return cycles
        return max(int(cycles * self.rng.uniform(1.0 - p / 100.0, 1.0 + p / 100.0)), 0)
