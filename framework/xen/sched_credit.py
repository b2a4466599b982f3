"""Xen's SMP credit scheduler (Xen 3.0.4/3.1 ``common/sched_credit.c``) as pure logic.

Why pure: the per-physical-CPU SimPy processes own time and events; keeping the policy free
of SimPy, randomness and wall clock makes it unit-testable and bit-for-bit reproducible.
Every container is iterated in a fixed order, mirroring Xen's list order where it matters.

What is Xen's, on purpose (3.0.4 and 3.1 have the same algorithm):

* Debit is *sampled*: the 10 ms tick charges the VCPU it finds running a whole tick
  (``csched_vcpu_acct``: 100 credits), whatever ran in between. That tick is also the only
  way onto the *active* list that earns credit; a VCPU leaves it when ``csched_acct`` finds
  it holding more than one time slice of credit (300), which also resets its credit to 0.
  So a VCPU that only ever runs between ticks (a 100 Hz timer guest) is never charged,
  never earns, stays UNDER and takes BOOST on every wake.
* ``csched_acct`` runs on the master CPU every third tick and splits 300 credits per CPU
  among the active domains by weight (a domain can take at most 300 per active VCPU, or
  its cap; what it cannot use goes to the rest), clamps debt at -300, parks VCPUs of capped
  domains that are over their cap (Xen pauses them) and unparks them once back in credit.
* Priorities BOOST > UNDER > OVER > IDLE. Only an UNDER, unparked VCPU is boosted on wake;
  the tick that finds a BOOST VCPU running makes it UNDER.
* Per-CPU run queues (tail of the priority class on insert; UNDER moved before OVER by
  each CPU at its first tick after accounting) and ``csched_load_balance``: a CPU whose
  best local VCPU is OVER or idle steals the first strictly better VCPU it may run from
  the busy peers, in CPU order after itself. An OVER VCPU is never taken from a peer by a
  CPU that has any work, so credit1 does not rebalance OVER VCPUs across CPUs (see
  ``scenarios/sched/placement-2cpu.yaml``).
* ``csched_cpu_pick`` on this port: the PowerPC port made every CPU its own core ("For now
  everything is single core" in ``arch/powerpc/setup.c``), so the idle-neighbour heuristic
  never moves a VCPU: a VCPU stays on its processor while its affinity allows it.

Ownership rules the caller must follow (they mirror ``schedule()`` in Xen):

* a CPU's ``current`` VCPU is handed back with :meth:`CreditScheduler.deschedule` before
  :meth:`CreditScheduler.pick_next` is called (SCHEDOP_yield too: the VCPU goes to the tail
  of its priority class);
* CPU numbers returned by ``wake``/``set_affinity``/``accounting`` (and collected by
  :meth:`CreditScheduler.take_kicks` for calls whose signature cannot return them) are
  "tickles": those CPUs must deschedule + ``pick_next`` soon (Xen's SCHEDULE_SOFTIRQ).
  The tick does not preempt the runner by itself: a VCPU keeps its CPU until its 30 ms
  slice ends, it blocks, it is parked, or a tickle finds a better VCPU.
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
    (literal ints, for the same reason as `Pri`). A RUNNABLE VCPU that is parked is off
    every run queue until accounting unparks it (Xen pauses it)."""

    RUNNING: Final = 0
    RUNNABLE: Final = 1
    BLOCKED: Final = 2
    OFFLINE: Final = 3


@dataclass(eq=False)
class SchedDomain:
    """Per-domain parameters (``struct csched_dom``): weight and cap are domain-wide."""

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
        self._active: list[SchedDomain] = []  # csched_priv.active_sdom, head first
        self._credit_balance = 0
        self._runq_sort = 0
        self._runq_sort_last: list[int] = [0] * ncpus
        self._runq: list[list[SchedVcpu]] = [[] for _ in range(ncpus)]
        self._curr: list[SchedVcpu | None] = [None] * ncpus
        self._ticks: list[int] = [0] * ncpus
        self._kicks: list[int] = []

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
        svc = SchedVcpu(dom=dom, vcpu=vcpu, domain=sdom, affinity=aff)
        svc.processor = self._initial_cpu(sdom, vcpu)
        if not svc.allows(svc.processor):
            svc.processor = self._pick_cpu(svc)
        sdom.vcpus[vcpu] = svc
        return svc

    def _initial_cpu(self, sdom: SchedDomain, vcpu: int) -> int:
        """Where Xen first places a VCPU (``XEN_DOMCTL_max_vcpus``): dom0's VCPU i on CPU
        i; a guest's VCPU 0 on ``default_vcpu0_location``'s least-populated CPU, the next
        VCPUs round-robin after it.

        ``default_vcpu0_location`` counts VCPUs that are up, starts from CPU 0, skips it
        (it is in CPU 0's sibling map) and takes any later CPU with a count ``<=`` the best
        so far, so ties go to the highest-numbered CPU and CPU 0 only wins when it is
        strictly the least populated.
        """
        if sdom.dom == 0:
            return vcpu % self.ncpus
        if vcpu > 0 and vcpu - 1 in sdom.vcpus:
            return (sdom.vcpus[vcpu - 1].processor + 1) % self.ncpus
        cnt = [0] * self.ncpus
        for d in self._doms.values():
            for v in d.vcpus.values():
                if v.vcpu == 0 or v.state != VcpuState.OFFLINE:
                    cnt[v.processor] += 1
        cpu = 0
        for i in range(1, self.ncpus):
            if cnt[i] <= cnt[cpu]:
                cpu = i
        return cpu

    def remove_domain(self, dom: int) -> None:
        """Destroy a domain; CPUs it was running on go idle and are left in ``take_kicks``."""
        sdom = self._domain(dom)
        for svc in sdom.vcpus.values():
            if svc.state == VcpuState.RUNNING:
                self._curr[svc.processor] = None
                self._kick(svc.processor)
            elif svc.state == VcpuState.RUNNABLE and not svc.parked:
                self._runq[svc.processor].remove(svc)
            svc.state = VcpuState.OFFLINE
            if svc.active:
                self._acct_stop(svc)
        del self._doms[dom]

    def set_affinity(self, dom: int, vcpu: int, affinity: frozenset[int] | None) -> list[int]:
        """``xm vcpu-pin``: re-home a queued VCPU now; a running one via its CPU's kick.

        Xen migrates by sleeping the VCPU and waking it on ``csched_cpu_pick``'s CPU, so
        the moved VCPU goes through the wake path (and its BOOST rule) there.
        """
        svc = self.vcpu(dom, vcpu)
        svc.affinity = self._check_affinity(affinity)
        if svc.allows(svc.processor):
            return []
        if svc.state == VcpuState.RUNNING:
            # Xen's _VPF_migrating: the CPU must deschedule it; deschedule re-homes it.
            return [svc.processor]
        queued = svc.state == VcpuState.RUNNABLE and not svc.parked
        if queued:
            self._runq[svc.processor].remove(svc)
        self._set_processor(svc, self._pick_cpu(svc))
        return self._wake_insert(svc) if queued else []

    # ----------------------------------------------------------------- state changes

    def wake(self, dom: int, vcpu: int, now: int) -> list[int]:
        """``csched_vcpu_wake``: queue on its processor; BOOST only an UNDER, unparked VCPU."""
        svc = self.vcpu(dom, vcpu)
        if svc.state in (VcpuState.RUNNING, VcpuState.RUNNABLE):
            return []
        svc.state = VcpuState.RUNNABLE
        if svc.parked:
            return []  # paused by its cap: accounting queues it when it unparks
        return self._wake_insert(svc)

    def block(self, dom: int, vcpu: int, now: int) -> None:
        """Take a VCPU off the CPU/runq; if it was running its CPU goes idle (and is kicked)."""
        self._sleep(dom, vcpu, VcpuState.BLOCKED)

    def offline(self, dom: int, vcpu: int, now: int) -> None:
        """VCPUOP_down: like block; a later wake is VCPUOP_up."""
        self._sleep(dom, vcpu, VcpuState.OFFLINE)

    def deschedule(self, cpu: int, now: int, still_runnable: bool) -> None:
        """Hand back ``cpu``'s current VCPU; ``csched_schedule`` requeues it if runnable.

        Nothing is charged here: credit1 debits only at ticks. A no-op when the CPU is
        idle, so callers may block() first and deschedule() after.
        """
        self._check_cpu(cpu)
        svc = self._curr[cpu]
        if svc is None:
            return
        self._curr[cpu] = None
        if not still_runnable:
            svc.state = VcpuState.BLOCKED
            return
        svc.state = VcpuState.RUNNABLE
        if svc.parked:
            return  # paused: off the run queues until unparked
        if svc.allows(cpu):
            self._insert(cpu, svc)
            return
        # Pinned away while running: vcpu_migrate wakes it on the CPU csched_cpu_pick finds.
        self._set_processor(svc, self._pick_cpu(svc))
        for k in self._wake_insert(svc):
            self._kick(k)

    # ----------------------------------------------------------------- scheduling

    def pick_next(self, cpu: int, now: int) -> tuple[SchedVcpu | None, int]:
        """``csched_schedule``: best local VCPU, or steal better work if local is OVER/idle."""
        self._check_cpu(cpu)
        if self._curr[cpu] is not None:
            raise RuntimeError(f"cpu {cpu}: deschedule the current vcpu before pick_next")
        q = self._runq[cpu]
        snext = q[0] if q else None
        if snext is not None and snext.pri > Pri.OVER:
            q.pop(0)
        else:
            stolen = self._load_balance(cpu, Pri.IDLE if snext is None else snext.pri)
            if stolen is not None:
                snext = stolen
            elif snext is not None:
                q.pop(0)
        if snext is not None:
            self._set_processor(snext, cpu)
            snext.state = VcpuState.RUNNING
            self._curr[cpu] = snext
        return snext, self.tslice_ns

    def tick(self, cpu: int, now: int) -> bool:
        """``csched_tick``: debit the runner one tick, run accounting on the master CPU
        every third tick, then sort this CPU's run queue if accounting ran since.

        Returns True if ``cpu`` should reschedule now (its runner was parked). Kicks for
        other CPUs produced by accounting are queued for :meth:`take_kicks`. Slice expiry
        is the caller's job.
        """
        self._check_cpu(cpu)
        self._ticks[cpu] += 1
        svc = self._curr[cpu]
        if svc is not None:
            self._vcpu_acct(svc)
        kick_self = False
        if cpu == MASTER_CPU and self._ticks[cpu] % TICKS_PER_ACCT == 0:
            for k in self.accounting(now):
                if k == cpu:
                    kick_self = True
                else:
                    self._kick(k)
        self._runq_sort_cpu(cpu)
        return kick_self

    def accounting(self, now: int) -> list[int]:
        """``csched_acct``: hand out one period of credit by weight, apply caps, park/unpark.

        Returns CPUs to kick: those running a VCPU just parked, and those an unparked VCPU
        tickles. Run queues are re-sorted lazily, by each CPU's next tick.
        """
        kicks = self._distribute_credit()
        self._runq_sort += 1
        return sorted(set(kicks))

    def take_kicks(self) -> list[int]:
        """Drain CPUs kicked by calls that cannot return them (tick's accounting, etc.)."""
        kicks = sorted(set(self._kicks))
        self._kicks.clear()
        return kicks

    # ----------------------------------------------------------------- inspection

    def runq(self, cpu: int) -> list[SchedVcpu]:
        """Copy of ``cpu``'s run queue, head first, for tests and traces."""
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

    def active_domains(self) -> list[int]:
        """Domains on the active list, in Xen's list order (head first)."""
        return [d.dom for d in self._active]

    # ----------------------------------------------------------------- internals

    def _vcpu_acct(self, svc: SchedVcpu) -> None:
        """``csched_vcpu_acct``: end BOOST, debit a tick, (re)join the active list.

        ``csched_cpu_pick`` never moves a running VCPU on this port (see the module
        docstring), so the migrate-running branch has nothing to do.
        """
        if svc.pri == Pri.BOOST:
            svc.pri = Pri.UNDER
        svc.credit -= CREDITS_PER_TICK
        if not svc.active:
            self._acct_start(svc)

    def _distribute_credit(self) -> list[int]:
        """``csched_acct``'s arithmetic, integer and in Xen's list order.

        Returns the CPUs that parking and unparking kicked.
        """
        weight_total = sum(d.weight for d in self._active)
        credit_total = CREDITS_PER_ACCT * self.ncpus
        balance = self._credit_balance
        if balance < 0:
            credit_total -= balance  # converge the system-wide balance towards 0
        if weight_total == 0:
            self._credit_balance = 0
            return []
        weight_left = weight_total
        credit_xtra = False
        credit_cap = 0
        new_balance = 0
        kicks: list[int] = []
        for sdom in list(self._active):
            nact = len(sdom.active_vcpus)
            weight_left -= sdom.weight
            credit_peak = nact * CREDITS_PER_ACCT
            if balance < 0:
                credit_peak += (-balance * sdom.weight + weight_total - 1) // weight_total
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
                was_parked = svc.parked
                new_balance += self._settle(svc, credit_fair, credit_cap)
                if svc.parked != was_parked:
                    kicks.extend(self._park_changed(svc))
        self._credit_balance = new_balance
        return kicks

    def _park_changed(self, svc: SchedVcpu) -> list[int]:
        """Xen pauses a parked VCPU and unpauses (wakes) an unparked one right inside the
        accounting loop, so later VCPUs' tickles see the queues as they are then."""
        if svc.parked:
            if svc.state == VcpuState.RUNNING:
                return [svc.processor]  # vcpu_pause_nosync: its CPU must deschedule it
            if svc.state == VcpuState.RUNNABLE:
                self._runq[svc.processor].remove(svc)
            return []
        if svc.state == VcpuState.RUNNABLE:
            # vcpu_unpause -> vcpu_wake while the flag is still set: no BOOST.
            return self._wake_insert(svc, boost=False)
        return []

    def _settle(self, svc: SchedVcpu, credit_fair: int, credit_cap: int) -> int:
        """Pay one VCPU, re-derive its priority, park/unpark, clamp; returns its credit.

        ``credit_cap`` is only meaningful for a capped domain (Xen reuses the variable).
        """
        svc.credit += credit_fair
        if svc.credit < 0:
            svc.pri = Pri.OVER
            if svc.domain.cap != 0 and svc.credit < -credit_cap:
                svc.parked = True
            svc.credit = max(svc.credit, -CREDITS_PER_TSLICE)
            return svc.credit
        svc.pri = Pri.UNDER
        svc.parked = False
        if svc.credit > CREDITS_PER_TSLICE:
            self._acct_stop(svc)
            svc.credit = 0
        return svc.credit

    def _sleep(self, dom: int, vcpu: int, state: int) -> None:
        """Shared body of block/offline: remove from wherever the VCPU currently sits."""
        svc = self.vcpu(dom, vcpu)
        if svc.state == VcpuState.RUNNING:
            cpu = svc.processor
            self._curr[cpu] = None
            self._kick(cpu)
        elif svc.state == VcpuState.RUNNABLE and not svc.parked:
            self._runq[svc.processor].remove(svc)
        if svc.state != VcpuState.OFFLINE:
            svc.state = state

    def _acct_start(self, svc: SchedVcpu) -> None:
        """``__csched_vcpu_acct_start``: VCPU (and domain) to the head of the active lists."""
        svc.active = True
        sdom = svc.domain
        sdom.active_vcpus.insert(0, svc)
        if len(sdom.active_vcpus) == 1:
            self._active.insert(0, sdom)

    def _acct_stop(self, svc: SchedVcpu) -> None:
        """``__csched_vcpu_acct_stop_locked``: the VCPU stops earning credit."""
        sdom = svc.domain
        sdom.active_vcpus.remove(svc)
        svc.active = False
        if not sdom.active_vcpus:
            self._active.remove(sdom)

    def _wake_insert(self, svc: SchedVcpu, boost: bool = True) -> list[int]:
        """The body of ``csched_vcpu_wake`` for a runnable VCPU off every queue."""
        if boost and svc.pri == Pri.UNDER:
            svc.pri = Pri.BOOST
        cpu = svc.processor
        self._insert(cpu, svc)
        return self._tickle(cpu, svc)

    def _insert(self, cpu: int, svc: SchedVcpu) -> None:
        """``__runq_insert``: before the first VCPU of strictly lower priority."""
        q = self._runq[cpu]
        idx = len(q)
        for i, other in enumerate(q):
            if svc.pri > other.pri:
                idx = i
                break
        q.insert(idx, svc)

    def _runq_sort_cpu(self, cpu: int) -> None:
        """``csched_runq_sort``: once per accounting, move BOOST/UNDER ahead of OVER,
        keeping the relative order within each group."""
        if self._runq_sort_last[cpu] == self._runq_sort:
            return
        self._runq_sort_last[cpu] = self._runq_sort
        q = self._runq[cpu]
        q[:] = [s for s in q if s.pri >= Pri.UNDER] + [s for s in q if s.pri < Pri.UNDER]

    def _load_balance(self, cpu: int, pri: int) -> SchedVcpu | None:
        """``csched_load_balance``: from busy peers cpu+1, cpu+2, ..., take the first VCPU
        of strictly higher priority than ``pri`` that may run here (``csched_runq_steal``
        stops at a peer's first VCPU that is not better)."""
        for i in range(1, self.ncpus):
            peer = (cpu + i) % self.ncpus
            if self._curr[peer] is None:
                continue  # an idle peer picks up its own work
            q = self._runq[peer]
            for svc in q:
                if svc.pri <= pri:
                    break
                if svc.allows(cpu):
                    q.remove(svc)
                    return svc
        return None

    def _tickle(self, cpu: int, svc: SchedVcpu) -> list[int]:
        """``__runq_tickle``: the CPU if ``svc`` outranks its runner; and if that CPU is
        busy, every idle CPU ``svc`` may run on, so one of them steals it."""
        cur = self._curr[cpu]
        cur_pri = Pri.IDLE if cur is None else cur.pri
        mask: list[int] = []
        if svc.pri > cur_pri:
            mask.append(cpu)
        if cur_pri > Pri.IDLE:
            mask.extend(c for c in range(self.ncpus) if self._curr[c] is None and svc.allows(c))
        return sorted(set(mask))

    def _pick_cpu(self, svc: SchedVcpu) -> int:
        """``csched_cpu_pick`` on this port: its processor if allowed, else the next
        allowed CPU after it (every CPU being its own core, idlers never win)."""
        for i in range(self.ncpus):
            c = (svc.processor + i) % self.ncpus
            if svc.allows(c):
                return c
        raise AssertionError("affinity is never empty")

    def _set_processor(self, svc: SchedVcpu, cpu: int) -> None:
        """Record a move so callers can model migration costs from ``migrations``."""
        if svc.processor != cpu:
            svc.processor = cpu
            svc.migrations += 1

    def _kick(self, cpu: int) -> None:
        """Remember a CPU that must reschedule, for :meth:`take_kicks`."""
        self._kicks.append(cpu)

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
