"""Xen's SMP credit scheduler (Xen 3.0.4/3.1 ``common/sched_credit.c``) as pure logic.

Why pure: the per-physical-CPU SimPy processes own time and events; keeping the policy free
of SimPy, randomness and wall clock makes it unit-testable and bit-for-bit reproducible.
All times are integer nanoseconds; every container is iterated in a fixed order.

Ownership rules the caller must follow (they mirror ``schedule()`` in Xen):

* a CPU's ``current`` VCPU is handed back with :meth:`CreditScheduler.deschedule` before
  :meth:`CreditScheduler.pick_next` is called (SCHEDOP_yield too: the VCPU goes to the tail
  of its priority class);
* CPU numbers returned by ``wake``/``set_affinity``/``accounting`` (and collected by
  :meth:`CreditScheduler.take_kicks` for calls whose signature cannot return them) are
  "tickles": those CPUs must deschedule + ``pick_next`` soon (Xen's SCHEDULE_SOFTIRQ).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

CREDITS_PER_TICK: Final = 100
TICKS_PER_TSLICE: Final = 3
TICKS_PER_ACCT: Final = 3
CREDITS_PER_TSLICE: Final = CREDITS_PER_TICK * TICKS_PER_TSLICE
CREDITS_PER_ACCT: Final = CREDITS_PER_TICK * TICKS_PER_ACCT
DEFAULT_WEIGHT: Final = 256
MAX_WEIGHT: Final = 65535
MASTER_CPU: Final = 0


class Pri:
    """Scheduling priority; the numeric values are Xen's so larger always wins.

    Literal int constants, not an enum: compared on every wake and pick, and mypyc
    compiles a literal `Final` to a constant (an enum member compare is a call).
    """

    BOOST: Final = 0
    UNDER: Final = -1
    OVER: Final = -2
    IDLE: Final = -64


class VcpuState:
    """Where a VCPU is, so the scheduler can keep runq/current membership consistent
    (literal ints, for the same reason as `Pri`)."""

    RUNNING: Final = 0
    RUNNABLE: Final = 1
    BLOCKED: Final = 2
    OFFLINE: Final = 3


@dataclass(eq=False)
class SchedDomain:
    """Per-domain parameters: weight and cap are domain-wide in the credit scheduler."""

    dom: int
    weight: int = DEFAULT_WEIGHT
    cap: int = 0
    vcpus: dict[int, SchedVcpu] = field(default_factory=dict, repr=False)
    active_vcpus: list[SchedVcpu] = field(default_factory=list, repr=False)


@dataclass(eq=False)
class SchedVcpu:
    """Per-VCPU scheduler state (``struct csched_vcpu``); identity-compared on purpose."""

    dom: int
    vcpu: int
    domain: SchedDomain = field(repr=False)
    affinity: frozenset[int] | None = None
    processor: int = 0
    credit: int = 0
    pri: int = Pri.UNDER
    state: int = VcpuState.OFFLINE
    parked: bool = False
    migrations: int = 0
    active: bool = False
    burn_rem: int = 0

    @property
    def weight(self) -> int:
        """Expose the domain's weight because that is what the VCPU competes with."""
        return self.domain.weight

    def allows(self, cpu: int) -> bool:
        """Whether affinity lets this VCPU run on ``cpu`` (None means anywhere)."""
        return self.affinity is None or cpu in self.affinity


class CreditScheduler:
    """Proportional-share SMP scheduler: weights, caps, BOOST on wake, work-stealing."""

    def __init__(
        self, ncpus: int, *, tick_ns: int = 10_000_000, tslice_ns: int = 30_000_000
    ) -> None:
        if ncpus < 1:
            raise ValueError(f"ncpus must be >= 1, got {ncpus}")
        if tick_ns <= 0 or tslice_ns <= 0:
            raise ValueError("tick_ns and tslice_ns must be positive")
        self.ncpus = ncpus
        self.tick_ns = tick_ns
        self.tslice_ns = tslice_ns
        self._doms: dict[int, SchedDomain] = {}
        self._active: list[SchedDomain] = []
        self._runq: list[list[SchedVcpu]] = [[] for _ in range(ncpus)]
        self._curr: list[SchedVcpu | None] = [None] * ncpus
        self._acct_from: list[int] = [0] * ncpus
        self._ticks: list[int] = [0] * ncpus
        self._kicks: list[int] = []
        self._now = 0

    # ----------------------------------------------------------------- domains/vcpus

    def add_domain(self, dom: int, weight: int = DEFAULT_WEIGHT, cap: int = 0) -> None:
        """Register a domain so its VCPUs can be created and share CPU by ``weight``."""
        if dom in self._doms:
            raise ValueError(f"domain {dom} already exists")
        self._check_params(weight, cap)
        self._doms[dom] = SchedDomain(dom, weight, cap)

    def set_params(self, dom: int, weight: int | None = None, cap: int | None = None) -> None:
        """``xm sched-credit``: new weight/cap take effect at the next accounting."""
        sdom = self._domain(dom)
        self._check_params(
            sdom.weight if weight is None else weight, sdom.cap if cap is None else cap
        )
        if weight is not None:
            sdom.weight = weight
        if cap is not None:
            sdom.cap = cap

    def add_vcpu(self, dom: int, vcpu: int, affinity: frozenset[int] | None = None) -> SchedVcpu:
        """Create an offline VCPU; ``wake`` brings it up, as VCPUOP_up does."""
        sdom = self._domain(dom)
        if vcpu in sdom.vcpus:
            raise ValueError(f"vcpu {dom}.{vcpu} already exists")
        aff = self._check_affinity(affinity)
        home = vcpu % self.ncpus
        if aff is not None and home not in aff:
            home = min(aff)
        svc = SchedVcpu(dom=dom, vcpu=vcpu, domain=sdom, affinity=aff, processor=home)
        sdom.vcpus[vcpu] = svc
        return svc

    def remove_domain(self, dom: int) -> None:
        """Destroy a domain; CPUs it was running on go idle and are left in ``take_kicks``."""
        sdom = self._domain(dom)
        for svc in sdom.vcpus.values():
            if svc.state == VcpuState.RUNNING:
                self._curr[svc.processor] = None
                self._kick(svc.processor)
            elif svc.state == VcpuState.RUNNABLE:
                self._runq[svc.processor].remove(svc)
            svc.state = VcpuState.OFFLINE
        if sdom in self._active:
            self._active.remove(sdom)
        sdom.active_vcpus.clear()
        del self._doms[dom]

    def set_affinity(self, dom: int, vcpu: int, affinity: frozenset[int] | None) -> list[int]:
        """``xm vcpu-pin``: re-home a queued VCPU now; a running one via its CPU's kick."""
        svc = self.vcpu(dom, vcpu)
        svc.affinity = self._check_affinity(affinity)
        if svc.allows(svc.processor):
            return []
        if svc.state == VcpuState.RUNNING:
            # Like Xen's _VCPUF_migrating: the CPU must deschedule it; deschedule re-homes it.
            return [svc.processor]
        if svc.state == VcpuState.RUNNABLE:
            self._runq[svc.processor].remove(svc)
            target = self._pick_cpu(svc)
            self._insert(target, svc)
            return self._tickle(target, svc)
        assert svc.affinity is not None
        self._set_processor(svc, min(svc.affinity))
        return []

    # ----------------------------------------------------------------- state changes

    def wake(self, dom: int, vcpu: int, now: int) -> list[int]:
        """Make a blocked/offline VCPU runnable; BOOST rewards I/O-bound VCPUs with latency."""
        self._advance(now)
        svc = self.vcpu(dom, vcpu)
        if svc.state in (VcpuState.RUNNING, VcpuState.RUNNABLE):
            return []
        if svc.state == VcpuState.BLOCKED and svc.pri == Pri.UNDER and not svc.parked:
            svc.pri = Pri.BOOST
        svc.state = VcpuState.RUNNABLE
        cpu = self._pick_cpu(svc)
        self._insert(cpu, svc)
        self._acct_start(svc)
        return self._tickle(cpu, svc)

    def block(self, dom: int, vcpu: int, now: int) -> None:
        """Take a VCPU off the CPU/runq; if it was running its CPU goes idle (and is kicked)."""
        self._sleep(dom, vcpu, now, VcpuState.BLOCKED)

    def offline(self, dom: int, vcpu: int, now: int) -> None:
        """VCPUOP_down: like block, but a later wake does not BOOST it."""
        self._sleep(dom, vcpu, now, VcpuState.OFFLINE)

    def deschedule(self, cpu: int, now: int, still_runnable: bool) -> None:
        """Stop ``cpu``'s current VCPU, charge it for the time it ran, requeue if runnable.

        A no-op when the CPU is idle, so callers may block() first and deschedule() after.
        """
        self._check_cpu(cpu)
        self._advance(now)
        svc = self._curr[cpu]
        if svc is None:
            return
        self._burn(cpu, now)
        self._curr[cpu] = None
        if not still_runnable:
            svc.state = VcpuState.BLOCKED
            return
        svc.state = VcpuState.RUNNABLE
        target = cpu if svc.allows(cpu) else self._pick_cpu(svc)
        self._insert(target, svc)
        if target != cpu:
            for k in self._tickle(target, svc):
                self._kick(k)

    # ----------------------------------------------------------------- scheduling

    def pick_next(self, cpu: int, now: int) -> tuple[SchedVcpu | None, int]:
        """``csched_schedule``: best local VCPU, or steal better work if local is OVER/idle."""
        self._check_cpu(cpu)
        self._advance(now)
        if self._curr[cpu] is not None:
            raise RuntimeError(f"cpu {cpu}: deschedule the current vcpu before pick_next")
        best = self._best(cpu)
        chosen: SchedVcpu | None
        if best is not None and best.pri > Pri.OVER:
            chosen = best
            self._runq[cpu].remove(best)
        else:
            chosen = self._steal(cpu, Pri.IDLE if best is None else best.pri)
            if chosen is None and best is not None:
                chosen = best
                self._runq[cpu].remove(best)
        if chosen is not None:
            self._set_processor(chosen, cpu)
            chosen.state = VcpuState.RUNNING
            self._curr[cpu] = chosen
            self._acct_from[cpu] = now
        return chosen, self.tslice_ns

    def tick(self, cpu: int, now: int) -> bool:
        """Per-CPU 10 ms tick: charge the runner, end its BOOST, run accounting on CPU 0.

        Returns True if ``cpu`` should reschedule now. Kicks for other CPUs produced by the
        accounting run are queued for :meth:`take_kicks`. Slice expiry is the caller's job.
        """
        self._check_cpu(cpu)
        self._advance(now)
        self._ticks[cpu] += 1
        svc = self._curr[cpu]
        if svc is not None:
            self._burn(cpu, now)
            self._acct_start(svc)
            if svc.pri == Pri.BOOST:
                svc.pri = Pri.UNDER if svc.credit >= 0 else Pri.OVER
        kick_self = False
        if cpu == MASTER_CPU and self._ticks[cpu] % TICKS_PER_ACCT == 0:
            for k in self.accounting(now):
                if k == cpu:
                    kick_self = True
                else:
                    self._kick(k)
        return kick_self or self._needs_resched(cpu)

    def accounting(self, now: int) -> list[int]:
        """``csched_acct``: hand out one period of credit by weight, apply caps, park/unpark.

        Running VCPUs are charged up to ``now`` first so debts are current. Returns CPUs to
        kick (parked runners, newly unparked work, or a waiting VCPU now outranking a runner).
        """
        self._advance(now)
        for cpu in range(self.ncpus):
            if self._curr[cpu] is not None:
                self._burn(cpu, now)
        unparked = self._distribute_credit()
        for q in self._runq:
            q.sort(key=lambda s: -s.pri)  # stable: FIFO within a class survives
        kicks: list[int] = []
        for cpu in range(self.ncpus):
            cur = self._curr[cpu]
            if (cur is not None and cur.parked) or self._needs_resched(cpu):
                kicks.append(cpu)
        for svc in unparked:
            if svc.state == VcpuState.RUNNABLE:
                kicks.extend(self._tickle(svc.processor, svc))
        return sorted(set(kicks))

    def take_kicks(self) -> list[int]:
        """Drain CPUs kicked by calls that cannot return them (tick's accounting, etc.)."""
        kicks = sorted(set(self._kicks))
        self._kicks.clear()
        return kicks

    # ----------------------------------------------------------------- inspection

    def runq(self, cpu: int) -> list[SchedVcpu]:
        """Copy of ``cpu``'s run queue, best first, for tests and traces."""
        self._check_cpu(cpu)
        return list(self._runq[cpu])

    def current(self, cpu: int) -> SchedVcpu | None:
        """VCPU running on ``cpu``, or None when it idles."""
        self._check_cpu(cpu)
        return self._curr[cpu]

    def vcpu(self, dom: int, vcpu: int) -> SchedVcpu:
        """Look up a VCPU, raising KeyError with a readable name if it does not exist."""
        svc = self._domain(dom).vcpus.get(vcpu)
        if svc is None:
            raise KeyError(f"no vcpu {dom}.{vcpu}")
        return svc

    def domain(self, dom: int) -> SchedDomain:
        """Look up a domain's scheduling parameters."""
        return self._domain(dom)

    # ----------------------------------------------------------------- internals

    def _distribute_credit(self) -> list[SchedVcpu]:
        """Do ``csched_acct``'s arithmetic, kept integer and in Xen's list order for fidelity."""
        weight_total = sum(d.weight for d in self._active)
        if weight_total == 0:
            return []
        credit_total = CREDITS_PER_ACCT * self.ncpus
        weight_left = weight_total
        credit_xtra = False
        unparked: list[SchedVcpu] = []
        for sdom in list(self._active):
            nact = len(sdom.active_vcpus)
            weight_left -= sdom.weight
            credit_peak = nact * CREDITS_PER_ACCT
            credit_cap = 0
            if sdom.cap != 0:
                credit_cap = (sdom.cap * CREDITS_PER_ACCT + 99) // 100
                credit_peak = min(credit_peak, credit_cap)
                credit_cap = (credit_cap + nact - 1) // nact
            credit_fair = (credit_total * sdom.weight + weight_total - 1) // weight_total
            if credit_fair < credit_peak:
                credit_xtra = True
            else:
                if weight_left != 0:
                    # Give other domains a chance at the credit this one cannot use.
                    credit_total += (
                        (credit_fair - credit_peak) * weight_total + weight_left - 1
                    ) // weight_left
                if credit_xtra:
                    self._active.remove(sdom)
                    self._active.insert(0, sdom)
                credit_fair = credit_peak
            credit_fair = (credit_fair + nact - 1) // nact
            for svc in list(sdom.active_vcpus):
                if self._settle(svc, credit_fair, credit_cap):
                    unparked.append(svc)
        return unparked

    def _settle(self, svc: SchedVcpu, credit_fair: int, credit_cap: int) -> bool:
        """Pay one VCPU, then re-derive pri/parking and clamp credit; True if unparked."""
        svc.credit += credit_fair
        if svc.credit < 0:
            svc.pri = Pri.OVER
            if svc.domain.cap != 0 and svc.credit < -credit_cap:
                svc.parked = True
            svc.credit = max(svc.credit, -CREDITS_PER_TSLICE)
            return False
        svc.pri = Pri.UNDER
        was_parked = svc.parked
        svc.parked = False
        if svc.credit > CREDITS_PER_TSLICE:
            self._acct_stop(svc)
        return was_parked

    def _sleep(self, dom: int, vcpu: int, now: int, state: int) -> None:
        """Shared body of block/offline: remove from wherever the VCPU currently sits."""
        self._advance(now)
        svc = self.vcpu(dom, vcpu)
        if svc.state == VcpuState.RUNNING:
            cpu = svc.processor
            self._burn(cpu, now)
            self._curr[cpu] = None
            self._kick(cpu)
        elif svc.state == VcpuState.RUNNABLE:
            self._runq[svc.processor].remove(svc)
        if svc.state != VcpuState.OFFLINE:
            svc.state = state

    def _burn(self, cpu: int, now: int) -> None:
        """Charge the runner 100 credits per tick of CPU time, carrying the remainder."""
        svc = self._curr[cpu]
        assert svc is not None
        ran = now - self._acct_from[cpu]
        self._acct_from[cpu] = now
        if ran <= 0:
            return
        total = ran * CREDITS_PER_TICK + svc.burn_rem
        svc.credit -= total // self.tick_ns
        svc.burn_rem = total % self.tick_ns
        self._acct_start(svc)

    def _acct_start(self, svc: SchedVcpu) -> None:
        """Put a VCPU (and its domain) on the active lists so it earns credit again."""
        if svc.active:
            return
        svc.active = True
        sdom = svc.domain
        sdom.active_vcpus.insert(0, svc)
        if sdom not in self._active:
            self._active.insert(0, sdom)

    def _acct_stop(self, svc: SchedVcpu) -> None:
        """Idle VCPU stops earning; Xen 3.0/3.1 also resets its credit to 0."""
        sdom = svc.domain
        sdom.active_vcpus.remove(svc)
        svc.active = False
        svc.credit = 0
        svc.burn_rem = 0
        if not sdom.active_vcpus:
            self._active.remove(sdom)

    def _insert(self, cpu: int, svc: SchedVcpu) -> None:
        """``__runq_insert``: tail of its priority class."""
        q = self._runq[cpu]
        idx = len(q)
        for i, other in enumerate(q):
            if svc.pri > other.pri:
                idx = i
                break
        q.insert(idx, svc)
        self._set_processor(svc, cpu)

    def _best(self, cpu: int) -> SchedVcpu | None:
        """Highest-priority pickable VCPU queued on ``cpu`` (parked ones are skipped)."""
        for svc in self._runq[cpu]:
            if not svc.parked:
                return svc
        return None

    def _steal(self, cpu: int, pri: int) -> SchedVcpu | None:
        """``csched_load_balance``: first strictly better VCPU on peers cpu+1, cpu+2, ..."""
        for i in range(1, self.ncpus):
            peer = (cpu + i) % self.ncpus
            q = self._runq[peer]
            for svc in q:
                if svc.parked:
                    continue
                if svc.pri <= pri:
                    break
                if svc.allows(cpu):
                    q.remove(svc)
                    return svc
        return None

    def _tickle(self, cpu: int, svc: SchedVcpu) -> list[int]:
        """``__runq_tickle``: CPUs that should reschedule because ``svc`` was queued."""
        if svc.parked or svc.state != VcpuState.RUNNABLE:
            return []
        cur = self._curr[cpu]
        mask: list[int] = []
        if svc.pri > (Pri.IDLE if cur is None else cur.pri):
            mask.append(cpu)
        pickable = sum(1 for s in self._runq[cpu] if not s.parked)
        if cur is not None or pickable >= 2:
            # More runnable work here than this CPU can run: wake idlers that may steal it.
            mask.extend(
                c for c in range(self.ncpus) if c != cpu and self._curr[c] is None and svc.allows(c)
            )
        return sorted(set(mask))

    def _needs_resched(self, cpu: int) -> bool:
        """Whether the runner is parked or a strictly better VCPU waits on ``cpu``."""
        cur = self._curr[cpu]
        if cur is not None and cur.parked:
            return True
        best = self._best(cpu)
        return best is not None and best.pri > (Pri.IDLE if cur is None else cur.pri)

    def _pick_cpu(self, svc: SchedVcpu) -> int:
        """Home for a waking VCPU: last CPU if allowed, else an idle one, else least loaded."""
        if svc.allows(svc.processor):
            return svc.processor
        allowed = [c for c in range(self.ncpus) if svc.allows(c)]
        for c in allowed:
            if self._curr[c] is None:
                return c
        return min(allowed, key=lambda c: (len(self._runq[c]) + 1, c))

    def _set_processor(self, svc: SchedVcpu, cpu: int) -> None:
        """Record a move so callers can model migration costs from ``migrations``."""
        if svc.processor != cpu:
            svc.processor = cpu
            svc.migrations += 1

    def _kick(self, cpu: int) -> None:
        """Remember a CPU that must reschedule, for :meth:`take_kicks`."""
        self._kicks.append(cpu)

    def _advance(self, now: int) -> None:
        """Track the latest time seen.

        Calls made from inside a running slice (a wake by an event send) can be ahead of
        another CPU's clock by up to one slice; that order is legal, so time only ever
        moves forward here and per-VCPU intervals are clamped at zero where they are used.
        """
        self._now = max(self._now, now)

    def _domain(self, dom: int) -> SchedDomain:
        sdom = self._doms.get(dom)
        if sdom is None:
            raise KeyError(f"no domain {dom}")
        return sdom

    def _check_cpu(self, cpu: int) -> None:
        if not 0 <= cpu < self.ncpus:
            raise ValueError(f"cpu {cpu} out of range 0..{self.ncpus - 1}")

    def _check_affinity(self, affinity: frozenset[int] | None) -> frozenset[int] | None:
        if affinity is None:
            return None
        aff = frozenset(affinity)
        if not aff or any(not 0 <= c < self.ncpus for c in aff):
            raise ValueError(f"affinity {sorted(aff)} must be a non-empty subset of cpus")
        return aff

    @staticmethod
    def _check_params(weight: int, cap: int) -> None:
        if not 1 <= weight <= MAX_WEIGHT:
            raise ValueError(f"weight {weight} out of range 1..{MAX_WEIGHT}")
        if cap < 0:
            raise ValueError(f"cap {cap} must be >= 0")
