"""The credit scheduler against an independent reference model, on random workloads.

Why step-by-step equality rather than shares within a tolerance: both sides claim to be
Xen 3.1's algorithm, which is deterministic, so on the same inputs they must make the same
decision at every instant; a difference anywhere is a bug in one of them, and Hypothesis
shrinks it to the shortest workload and first millisecond where they part. Shares would
hide small divergences (a wrong tie rule or rounding) that a Xen engineer would notice.

The workload driver is shared: every millisecond it wakes periodic VCPUs that are due,
runs the 10 ms ticks on each CPU, ends 30 ms slices, reschedules kicked CPUs (lowest
first), then lets each running VCPU use the millisecond; a periodic VCPU blocks once it
has used its burst.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from framework.xen.sched_credit import CreditScheduler
from tests.xen.credit_model import RefCredit

MS = 1_000_000


@dataclass(frozen=True)
class Load:
    """One single-VCPU domain: weight, cap, pin, and a period/burst in ms (0 = compute)."""

    weight: int
    cap: int
    pin: int | None
    period: int
    burst: int
    phase: int


class Policy(Protocol):
    def wake(self, dom: int, vcpu: int, now: int) -> list[int]: ...
    def block(self, dom: int, vcpu: int, now: int) -> None: ...
    def tick(self, cpu: int, now: int) -> bool: ...
    def take_kicks(self) -> list[int]: ...
    def deschedule(self, cpu: int, now: int, still_runnable: bool) -> None: ...
    def pick_next(self, cpu: int, now: int) -> tuple[object, int]: ...


class Real:
    """The scheduler under test, answering `running` like the model."""

    def __init__(self, ncpus: int, loads: list[Load]) -> None:
        self.s = CreditScheduler(ncpus)
        for dom, ld in enumerate(loads, start=1):
            self.s.add_domain(dom, weight=ld.weight, cap=ld.cap)
            self.s.add_vcpu(dom, 0, None if ld.pin is None else frozenset({ld.pin}))

    def __getattr__(self, name: str) -> object:
        return getattr(self.s, name)

    def running(self, cpu: int) -> int | None:
        cur = self.s.current(cpu)
        return None if cur is None else cur.dom


def drive(p: Policy, ncpus: int, loads: list[Load], ms: int) -> list[tuple[int | None, ...]]:
    """Run the workloads for ``ms`` milliseconds; the domain on each CPU, each millisecond."""
    used = [0] * len(loads)
    blocked = [True] * len(loads)
    slice_end = [0] * ncpus
    kicks: set[int] = set()
    out: list[tuple[int | None, ...]] = []
    for t in range(ms):
        now = t * MS
        for i, ld in enumerate(loads):
            due = t == 0 if ld.period == 0 else t >= ld.phase and (t - ld.phase) % ld.period == 0
            if due and blocked[i]:
                blocked[i], used[i] = False, 0
                kicks.update(p.wake(i + 1, 0, now))
        if t and t % 10 == 0:
            kicks.update(c for c in range(ncpus) if p.tick(c, now))
        kicks.update(p.take_kicks())
        kicks.update(c for c in range(ncpus) if p.running(c) is not None and now >= slice_end[c])  # type: ignore[attr-defined]
        while kicks:
            cpu = min(kicks)
            kicks.discard(cpu)
            p.deschedule(cpu, now, still_runnable=True)
            _, slice_ns = p.pick_next(cpu, now)
            slice_end[cpu] = now + slice_ns
            kicks.update(p.take_kicks())
        row = tuple(p.running(c) for c in range(ncpus))  # type: ignore[attr-defined]
        out.append(row)
        for d in row:
            if d is None:
                continue
            ld = loads[d - 1]
            used[d - 1] += 1
            if ld.period and used[d - 1] >= ld.burst:
                blocked[d - 1] = True
                p.block(d, 0, now + MS)
        kicks.update(p.take_kicks())
    return out


@st.composite
def workloads(draw: st.DrawFn) -> tuple[int, list[Load]]:
    """1-2 CPUs and 1-5 domains: compute-bound or periodic, random weights, some caps/pins."""
    ncpus = draw(st.integers(1, 2))
    loads = []
    for _ in range(draw(st.integers(1, 5))):
        period = draw(st.sampled_from([0, 0, 7, 10, 25, 40]))
        loads.append(
            Load(
                weight=draw(st.sampled_from([1, 64, 256, 256, 512, 1000])),
                cap=draw(st.sampled_from([0, 0, 0, 10, 30, 50, 100])),
                pin=draw(st.none() | st.integers(0, ncpus - 1)),
                period=period,
                burst=draw(st.integers(1, max(period, 1))),
                phase=draw(st.integers(0, 9)),
            )
        )
    return ncpus, loads


@settings(max_examples=60, deadline=None)
@given(workloads())
def test_scheduler_matches_reference_model(case: tuple[int, list[Load]]) -> None:
    """Same workload, same schedule, millisecond by millisecond, for 0.9 s (30 accounting periods)."""
    ncpus, loads = case
    doms = {i + 1: (ld.weight, ld.cap, ld.pin) for i, ld in enumerate(loads)}
    want = drive(RefCredit(ncpus, doms), ncpus, loads, 900)
    got = drive(Real(ncpus, loads), ncpus, loads, 900)  # type: ignore[arg-type]
    first = next((t for t, (a, b) in enumerate(zip(got, want, strict=True)) if a != b), None)
    assert first is None, f"ms {first}: scheduler ran {got[first]}, model {want[first]}"


@pytest.mark.parametrize("side", ["model", "scheduler"])
def test_weighted_shares_with_a_light_vcpu(side: str) -> None:
    """Issue 13's example, policy only: 256:512 next to a VCPU that runs 1 ms of every
    10 ms on one CPU gives the compute VCPUs 1/3 and 2/3 of the remaining 90 %."""
    loads = [Load(256, 0, None, 10, 1, 3), Load(256, 0, None, 0, 0, 0), Load(512, 0, None, 0, 0, 0)]
    doms = {i + 1: (ld.weight, ld.cap, ld.pin) for i, ld in enumerate(loads)}
    p = RefCredit(1, doms) if side == "model" else Real(1, loads)
    sched = drive(p, 1, loads, 6000)[3000:]  # type: ignore[arg-type]
    share = {d: sum(r[0] == d for r in sched) / len(sched) for d in (2, 3)}
    assert share[2] == pytest.approx(0.9 / 3, abs=0.03)
    assert share[3] == pytest.approx(0.9 * 2 / 3, abs=0.03)
