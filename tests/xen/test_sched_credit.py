"""Behavioural tests for the pure credit scheduler, driven by a tiny integer-ns CPU loop."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from framework.xen.sched_credit import (
    CREDITS_PER_TSLICE,
    CreditScheduler,
    Pri,
    SchedVcpu,
    VcpuState,
)

MS = 1_000_000
SEC = 1_000 * MS

Key = tuple[int, int]


class MiniSim:
    """N CPUs running always-runnable VCPUs; every event lands on a tick boundary."""

    def __init__(self, sched: CreditScheduler) -> None:
        """Start at t=0 with every CPU idle; wakes queue kicks for the first run step."""
        self.s = sched
        self.now = 0
        self.slice_end = [0] * sched.ncpus
        self.busy: dict[Key, int] = {}
        self.idle_ns = [0] * sched.ncpus
        self.picks: list[tuple[int, int, Key | None]] = []
        self.cpus_run_on: dict[Key, set[int]] = {}
        self.pending: set[int] = set()

    def wake(self, dom: int, vcpu: int) -> None:
        """Wake a VCPU now and remember which CPUs it tickled."""
        self.pending.update(self.s.wake(dom, vcpu, self.now))

    def run(self, duration_ns: int) -> None:
        """Advance tick by tick: ticks, kicks and slice ends reschedule, then bill the step."""
        s, tick = self.s, self.s.tick_ns
        end = self.now + duration_ns
        while self.now < end:
            if self.now > 0:
                self.pending.update(c for c in range(s.ncpus) if s.tick(c, self.now))
            self.pending.update(s.take_kicks())
            self.pending.update(
                c
                for c in range(s.ncpus)
                if s.current(c) is not None and self.now >= self.slice_end[c]
            )
            while self.pending:
                cpu = min(self.pending)
                self.pending.discard(cpu)
                if s.current(cpu) is not None:
                    s.deschedule(cpu, self.now, still_runnable=True)
                v, slice_ns = s.pick_next(cpu, self.now)
                self.slice_end[cpu] = self.now + slice_ns
                key = None if v is None else (v.dom, v.vcpu)
                self.picks.append((self.now, cpu, key))
                self.pending.update(s.take_kicks())
            for cpu in range(s.ncpus):
                cur = s.current(cpu)
                if cur is None:
                    self.idle_ns[cpu] += tick
                else:
                    key = (cur.dom, cur.vcpu)
                    self.busy[key] = self.busy.get(key, 0) + tick
                    self.cpus_run_on.setdefault(key, set()).add(cpu)
            self.now += tick

    def share(self, dom: int, vcpu: int = 0) -> float:
        """Fraction of one CPU the VCPU got so far."""
        return self.busy.get((dom, vcpu), 0) / self.now


@pytest.fixture
def make_sim() -> Callable[..., MiniSim]:
    """Build a scheduler + MiniSim with single-VCPU domains given as (dom, weight, cap)."""

    def build(ncpus: int, doms: list[tuple[int, int, int]], *, wake: bool = True) -> MiniSim:
        sched = CreditScheduler(ncpus)
        for dom, weight, cap in doms:
            sched.add_domain(dom, weight=weight, cap=cap)
            sched.add_vcpu(dom, 0)
        sim = MiniSim(sched)
        if wake:
            for dom, _, _ in doms:
                sim.wake(dom, 0)
        return sim

    return build


def check_invariants(s: CreditScheduler, vcpus: list[SchedVcpu]) -> None:
    """Each VCPU is in exactly the place its state says; none is lost or duplicated."""
    for v in vcpus:
        queued = [c for c in range(s.ncpus) for q in s.runq(c) if q is v]
        running = [c for c in range(s.ncpus) if s.current(c) is v]
        if v.state == VcpuState.RUNNING:
            assert (running, queued) == ([v.processor], []), v
            assert v.allows(v.processor), v
            assert not v.parked, v
        elif v.state == VcpuState.RUNNABLE and v.parked:
            assert (queued, running) == ([], []), v  # paused by its cap, as Xen does
        elif v.state == VcpuState.RUNNABLE:
            assert (queued, running) == ([v.processor], []), v
        else:
            assert (queued, running) == ([], []), v


def test_weights_share_cpu_proportionally(make_sim: Callable[..., MiniSim]) -> None:
    """Weight 512 gets twice the CPU of weight 256 when both are CPU-bound."""
    sim = make_sim(1, [(1, 256, 0), (2, 512, 0)])
    sim.run(3 * SEC)
    assert sim.share(1) == pytest.approx(1 / 3, abs=0.05)
    assert sim.share(2) == pytest.approx(2 / 3, abs=0.05)
    assert sim.idle_ns == [0]


def test_cap_limits_cpu_and_idles_the_rest(make_sim: Callable[..., MiniSim]) -> None:
    """cap=50 is non work conserving: the domain gets half a CPU even on an idle box."""
    sim = make_sim(1, [(1, 256, 50)])
    sim.run(3 * SEC)
    assert sim.share(1) == pytest.approx(0.5, abs=0.05)
    assert sim.idle_ns[0] / sim.now == pytest.approx(0.5, abs=0.05)
    assert any(v is None for _, _, v in sim.picks)


def test_work_conserving_three_vcpus_on_two_cpus(make_sim: Callable[..., MiniSim]) -> None:
    """Stealing keeps both CPUs busy and spreads three equal VCPUs at 2/3 each."""
    sim = make_sim(2, [(1, 256, 0), (2, 256, 0), (3, 256, 0)])
    sim.run(3 * SEC)
    assert sim.idle_ns == [0, 0]
    assert sum(sim.busy.values()) == 2 * sim.now
    for dom in (1, 2, 3):
        assert sim.share(dom) == pytest.approx(2 / 3, abs=0.07)


def test_boost_preempts_compute_bound_vcpu() -> None:
    """A woken UNDER VCPU gets BOOST, tickles the CPU and is picked at once; the tick that
    finds it running ends the boost and debits it a whole tick."""
    s = CreditScheduler(1)
    s.add_domain(1)
    s.add_domain(2)
    hog = s.add_vcpu(1, 0)
    io = s.add_vcpu(2, 0)
    assert s.wake(1, 0, 0) == [0]
    assert s.pick_next(0, 0) == (hog, s.tslice_ns)
    assert hog.pri == Pri.BOOST  # any UNDER wake is boosted, VCPUOP_up's too
    assert s.tick(0, 10 * MS) is False  # the tick alone preempts nobody
    assert (hog.pri, hog.credit) == (Pri.UNDER, -100)
    assert s.wake(2, 0, 15 * MS) == [0]
    assert io.pri == Pri.BOOST
    s.deschedule(0, 15 * MS, still_runnable=True)
    assert s.pick_next(0, 15 * MS) == (io, s.tslice_ns)
    assert s.runq(0) == [hog]
    s.tick(0, 20 * MS)
    assert (io.pri, io.credit, io.active) == (Pri.UNDER, -100, True)


def test_boost_not_granted_to_over_vcpu() -> None:
    """An OVER VCPU waking from block stays OVER and does not preempt an UNDER runner."""
    s = CreditScheduler(1)
    s.add_domain(1)
    s.add_domain(2)
    hog = s.add_vcpu(1, 0)
    io = s.add_vcpu(2, 0)
    s.wake(2, 0, 0)
    s.pick_next(0, 0)
    s.tick(0, 10 * MS)
    s.tick(0, 20 * MS)  # io charged 200 at two ticks
    s.block(2, 0, 25 * MS)
    s.wake(1, 0, 25 * MS)
    assert s.pick_next(0, 25 * MS) == (hog, s.tslice_ns)
    s.tick(0, 30 * MS)  # hog charged 100; accounting pays 150 each (300 split 256:256)
    assert (io.credit, io.pri) == (-50, Pri.OVER)
    assert (hog.credit, hog.pri) == (50, Pri.UNDER)
    assert s.wake(2, 0, 31 * MS) == []
    assert io.pri == Pri.OVER


def test_pinned_vcpu_never_runs_elsewhere(make_sim: Callable[..., MiniSim]) -> None:
    """Two VCPUs pinned to CPU 1 share it while CPU 0 idles: stealing honours affinity."""
    sim = make_sim(2, [(1, 256, 0), (2, 256, 0)], wake=False)
    for dom in (1, 2):
        assert sim.s.set_affinity(dom, 0, frozenset({1})) == []
        sim.wake(dom, 0)
    sim.run(1 * SEC)
    assert sim.cpus_run_on == {(1, 0): {1}, (2, 0): {1}}
    assert sim.idle_ns[0] == sim.now
    assert sim.share(1) == pytest.approx(0.5, abs=0.05)
    # An idle CPU 0 asked to schedule still finds nothing it may take.
    assert sim.s.pick_next(0, sim.now) == (None, sim.s.tslice_ns)


def test_set_affinity_moves_queued_and_running_vcpus() -> None:
    """vcpu-pin re-homes a queued VCPU and asks a running one's CPU to let go."""
    s = CreditScheduler(2)
    for dom in (1, 2, 3):
        s.add_domain(dom)
        s.add_vcpu(dom, 0, affinity=frozenset({1}))
    s.wake(1, 0, 0)
    s.wake(2, 0, 0)
    a, _ = s.pick_next(1, 0)
    assert a is s.vcpu(1, 0)
    queued = s.vcpu(2, 0)
    assert s.runq(1) == [queued]
    assert s.set_affinity(2, 0, frozenset({0})) == [0]
    assert (s.runq(0), s.runq(1)) == ([queued], [])
    assert (queued.processor, queued.migrations) == (0, 1)
    assert s.pick_next(0, 1 * MS) == (queued, s.tslice_ns)
    # Running VCPU pinned away: its CPU is kicked, deschedule re-homes it and tickles.
    assert s.set_affinity(1, 0, frozenset({0})) == [1]
    s.deschedule(1, 2 * MS, still_runnable=True)
    assert (s.runq(0), s.runq(1)) == ([a], [])
    assert s.take_kicks() == []  # cpu 0 runs an equal-priority VCPU: no preemption
    assert s.pick_next(1, 2 * MS) == (None, s.tslice_ns)
    # A blocked VCPU just gets a new home for its next wake.
    assert s.set_affinity(3, 0, frozenset({0})) == []
    assert s.vcpu(3, 0).processor == 0


def test_blocked_and_offline_vcpus_are_never_picked() -> None:
    """Only runnable VCPUs are picked, whatever their history."""
    s = CreditScheduler(1)
    s.add_domain(1)
    s.add_vcpu(1, 0)
    s.add_vcpu(1, 1)
    assert s.pick_next(0, 0) == (None, s.tslice_ns)  # both start offline
    s.wake(1, 0, 0)
    s.block(1, 0, 0)
    s.wake(1, 1, 0)
    s.offline(1, 1, 0)
    assert s.pick_next(0, 0) == (None, s.tslice_ns)
    s.wake(1, 0, 1)
    v, _ = s.pick_next(0, 1)
    assert v is s.vcpu(1, 0)
    s.block(1, 0, 2)
    assert s.current(0) is None
    assert s.take_kicks() == [0]
    assert s.pick_next(0, 2) == (None, s.tslice_ns)


def test_equal_priority_is_fifo() -> None:
    """Same-priority VCPUs round-robin in wake order: requeue goes to the class tail."""
    s = CreditScheduler(1)
    s.add_domain(1)
    for i in range(3):
        s.add_vcpu(1, i)
        s.wake(1, i, 0)
    order = []
    for step in range(6):
        v, _ = s.pick_next(0, step)
        assert v is not None
        order.append(v.vcpu)
        s.deschedule(0, step, still_runnable=True)
    assert order == [0, 1, 2, 0, 1, 2]


def test_deterministic_pick_sequence(make_sim: Callable[..., MiniSim]) -> None:
    """Identical inputs give an identical schedule."""
    runs = []
    for _ in range(2):
        sim = make_sim(2, [(1, 256, 0), (2, 512, 0), (3, 256, 40)])
        sim.run(500 * MS)
        runs.append(sim.picks)
    assert runs[0] == runs[1]
    assert len(runs[0]) > 10


def test_debit_is_sampled_at_ticks() -> None:
    """Credit1 charges only the VCPU a tick finds running, a whole tick each time: a VCPU
    that always runs between ticks is never charged and never joins the active list."""
    s = CreditScheduler(1)
    s.add_domain(1)
    s.add_domain(2)
    dodger = s.add_vcpu(1, 0)
    hog = s.add_vcpu(2, 0)
    s.wake(2, 0, 0)
    s.pick_next(0, 0)
    for tick in range(1, 31):
        t = tick * 10 * MS
        s.wake(1, 0, t + 1 * MS)
        s.deschedule(0, t + 1 * MS, still_runnable=True)
        assert s.pick_next(0, t + 1 * MS)[0] is dodger  # BOOST preempts the hog
        s.block(1, 0, t + 9 * MS)  # 8 ms of every 10, never at a tick
        assert s.pick_next(0, t + 9 * MS)[0] is hog
        s.tick(0, t + 10 * MS)
    assert (dodger.credit, dodger.active, dodger.pri) == (0, False, Pri.BOOST)
    assert hog.active and s.active_domains() == [2]


def test_credit_bounds_and_deactivation() -> None:
    """Debts floor at -300; a VCPU that hoards > 300 credits stops earning (credit 0)."""
    s = CreditScheduler(1)
    s.add_domain(1)
    s.add_domain(2)
    hog = s.add_vcpu(1, 0)
    idle = s.add_vcpu(2, 0)
    s.wake(2, 0, 0)
    s.pick_next(0, 0)
    s.tick(0, 10 * MS)  # idle is charged once: now active
    s.block(2, 0, 15 * MS)
    s.wake(1, 0, 15 * MS)
    s.pick_next(0, 15 * MS)
    for tick in range(2, 10):
        s.tick(0, tick * 10 * MS)  # hog burns 300 a period and earns 150
    assert (hog.credit, hog.pri) == (-CREDITS_PER_TSLICE, Pri.OVER)
    assert (idle.credit, idle.active) == (0, False)
    assert idle not in s.domain(2).active_vcpus
    assert s.active_domains() == [1]


def test_random_operations_keep_queues_consistent() -> None:
    """Seeded random wake/block/tick/pin traffic never loses or duplicates a VCPU."""
    rng = random.Random(1)
    s = CreditScheduler(3)
    vcpus: list[SchedVcpu] = []
    for dom, (weight, cap) in enumerate([(256, 0), (512, 0), (128, 60)], start=1):
        s.add_domain(dom, weight=weight, cap=cap)
        for i in range(2):
            aff = frozenset({i + 1}) if dom == 2 else None
            vcpus.append(s.add_vcpu(dom, i, affinity=aff))
    now = 0
    tick_at = s.tick_ns
    for _ in range(3000):
        now += rng.randrange(0, 3 * MS)
        kicks: list[int] = []
        while now >= tick_at:
            kicks.extend(c for c in range(s.ncpus) if s.tick(c, tick_at))
            tick_at += s.tick_ns
        v = rng.choice(vcpus)
        op = rng.randrange(10)
        if op < 4:
            kicks.extend(s.wake(v.dom, v.vcpu, now))
        elif op < 6:
            s.block(v.dom, v.vcpu, now)
        elif op == 6:
            s.offline(v.dom, v.vcpu, now)
        elif op == 7:
            aff = rng.choice([None, frozenset({0}), frozenset({1, 2}), frozenset({2})])
            kicks.extend(s.set_affinity(v.dom, v.vcpu, aff))
        elif op == 8:
            kicks.append(rng.randrange(s.ncpus))
        else:
            kicks.extend(s.accounting(now))
        kicks.extend(s.take_kicks())
        for cpu in sorted(set(kicks)):
            s.deschedule(cpu, now, still_runnable=True)
            s.pick_next(cpu, now)
        check_invariants(s, vcpus)
    states = {v.state for v in vcpus}
    assert {VcpuState.RUNNING, VcpuState.BLOCKED} <= states
