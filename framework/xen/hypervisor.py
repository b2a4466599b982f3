"""Xen on the 970: boot, domain lifecycle, wake/kick, timers and the upcall path.

Hypercall bodies live in `hypercalls`, `papr` and `domctl`; this class owns the state
they act on.  Everything Xen shares with a guest is read and written in machine memory.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Final

import simpy

from framework.errors import AllocError
from framework.hw970 import params
from framework.hw970.core import Core
from framework.hw970.devtree import parse_machine_devtree
from framework.hw970.machine import Machine
from framework.hw970.mmu import hid4_encode, rma_log2, sdr1_encode
from framework.hw970.regs import MSR_SF, VEC_EXTERNAL, VECTOR_NAMES
from framework.sim_events import timeout
from framework.trace.ids import K
from framework.trace.recorder import Recorder
from framework.xen import costs, evtchn
from framework.xen.console import ConsoleRing
from framework.xen.dom0_devtree import build_dom0_devtree
from framework.xen.domain import Domain, DomainState, Vcpu
from framework.xen.domain_lifetime import domain_kill
from framework.xen.grant_table import allocate_grant_frames, seed_reserved_grants
from framework.xen.hcall import HypercallBug, hypercall_entry
from framework.xen.jitter import Jitter
from framework.xen.mm import FrameAllocator, PhysMap
from framework.xen.p2m import ForeignArea
from framework.xen.public.arch_powerpc import EXTENT_ORDER, KernelImage, htab_bytes_for
from framework.xen.public.devtree import DomainDevtreeSpec
from framework.xen.public.sched import SHUTDOWN_NAMES
from framework.xen.public.vcpu import Runstate
from framework.xen.public.xen import SHARED_INFO, VCPU_INFO, VIRQ_DOM_EXC, VIRQ_TIMER
from framework.xen.sched_credit import CreditScheduler, Pri
from framework.xen.schedule import PhysicalCpu

TICK_NS: Final = 10_000_000
#: Wall-clock time at system time 0 (shared_info wc_sec): 2007-06-01 00:00:00 UTC, a
#: fixed instant so that runs stay byte-identical.
BOOT_WALLCLOCK_S: Final = 1_180_656_000


def time_scale(ticks_per_s: int) -> tuple[int, int]:
    """(tsc_to_system_mul, tsc_shift) for a counter of `ticks_per_s`: x86 Xen 3.1's
    `set_time_scale` (arch/x86/time.c), bringing the rate into [1e9, 2e9) by shifts
    and taking the 32-bit fraction 1e9 / rate."""
    tps, shift = ticks_per_s, 0
    while tps > 2_000_000_000:
        tps >>= 1
        shift -= 1
    while tps < 1_000_000_000:
        tps <<= 1
        shift += 1
    return (1_000_000_000 << 32) // tps, shift


#: Domain states in which a VCPU's set_timer_op deadline still fires.
_TIMERS_FIRE: Final = (DomainState.RUNNING, DomainState.PAUSED)


class Hypervisor:
    """The hypervisor instance running on one `Machine`."""

    def __init__(
        self,
        machine: Machine,
        env: simpy.Environment,
        rec: Recorder,
        scheduler: Callable[[int], CreditScheduler] = CreditScheduler,
        *,
        sync_quantum_ns: int = params.SYNC_QUANTUM_NS,
        jitter: Jitter | None = None,
    ) -> None:
        """`scheduler` makes the scheduler for the machine's CPU count (injectable);
        `sync_quantum_ns` bounds how far busy CPUs run apart; `jitter` adds seeded noise."""
        if sync_quantum_ns <= 0:
            raise ValueError(f"sync_quantum_ns must be positive, not {sync_quantum_ns}")
        self.machine = machine
        self.env = env
        self.rec = rec
        self.memory = machine.memory
        info = parse_machine_devtree(machine.devtree)
        self.ncpus = info.ncpus
        # Every frame taken back is scrubbed before anyone can be given it again.
        self.alloc = FrameAllocator(info.memory_ranges, scrub=machine.memory.zero)
        self.domains: dict[int, Domain] = {}
        #: The last domain id handed out by createdomain (Xen's static `rover`).
        self.domid_rover = 0
        self.tick_ns = TICK_NS
        self.sync_quantum_ns = sync_quantum_ns
        self.jitter = jitter if jitter is not None and jitter.params.enabled else None
        self.timebase_hz = machine.cores[0].timebase_hz
        self.tsc_to_system_mul, self.tsc_shift = time_scale(self.timebase_hz)
        self.sched = scheduler(self.ncpus)
        self.pcpus = [PhysicalCpu(self, c) for c in range(self.ncpus)]
        #: The CPU whose slice is running now (slices run one at a time), if any.
        self.slice_cpu: PhysicalCpu | None = None
        #: How many CPUs have a VCPU (not idle): what others_busy asks, kept by PhysicalCpu.
        self.busy_cpus = 0
        self._timers: list[tuple[int, int, int, int]] = []  # (deadline, dom, vcpu, gen)
        self._posts: list[int] = []  # due times of effects posted by `post_at`
        #: MPIC source (pirq) -> (domid, port) bound with EVTCHNOP_bind_pirq.
        self.pirqs: dict[int, tuple[int, int]] = {}
        self.console_sink: Callable[[Domain, str], None] = lambda dom, line: None
        #: Xen's own messages, read by sysctl readconsole (`xm dmesg`).
        self.conring = ConsoleRing(rec)
        self.on_domain_dead: Callable[[Domain], None] = lambda dom: None
        #: Run when a domain is finally destroyed (see `domain_lifetime.domain_destroy`).
        self.destroy_hooks: list[Callable[[Domain], None]] = []
        #: Unexpected exceptions out of hypercall handlers (simulator bugs), in order.
        self.bugs: list[HypercallBug] = []
        for core in machine.cores:
            core.on_hypercall = hypercall_entry(self)
            core.external_pending = self._external_pending
            core.on_exception = self._on_exception
            core.on_rfid = self._on_rfid

    # -- time ------------------------------------------------------------------------------
    def now(self) -> int:
        """Current simulated time, inside a running slice if one is running."""
        p = self.slice_cpu
        if p is not None:
            return p.core.now_ns()
        return int(self.env.now)

    def running_cpu(self) -> int:
        p = self.slice_cpu
        return p.cpu if p is not None else -1

    def start(self) -> None:
        self.conring.boot_banner(self.ncpus, self.now())
        for p in self.pcpus:
            self.env.process(p.run())

    # -- domains ---------------------------------------------------------------------------
    def create_domain(self, name: str, domid: int, *, privileged: bool = False) -> Domain:
        """A new domain under `domid` (createdomain picks it: domctl.free_domid)."""
        dom = Domain(domid=domid, name=name, privileged=privileged)
        if privileged:
            dom.foreign = ForeignArea()  # where it maps other domains' grants
        self.domains[domid] = dom
        self.sched.add_domain(domid)
        return dom

    def allocate_rma(self, dom: Domain, rma_size: int) -> None:
        """Allocate the domain's naturally aligned RMA and its special pages."""
        rma_log2(rma_size)  # ValueError naming the allowed sizes
        if dom.phys is not None:
            raise ValueError(f"domain {dom.domid} already has an RMA")
        mfn = self.alloc.alloc_aligned(rma_size, rma_size, f"RMA of d{dom.domid}")
        dom.rma_mfn = mfn
        dom.rma_size = rma_size
        dom.phys = PhysMap(mfn, rma_size >> 12, [])
        self.memory.zero(mfn << 12, rma_size)
        dom.hid4 = hid4_encode(mfn << 12, rma_size, lpid=dom.domid & 0x3F)
        self.rec.emit(K.MEM_ALLOC, self.now(), -1, dom.domid, -1, mfn, rma_size >> 12, text="rma")
        self._init_shared_info(dom)
        allocate_grant_frames(self, dom)
        if not dom.privileged:
            seed_reserved_grants(self, dom)  # console and xenstore pages, for dom0's backends

    def add_extents(self, dom: Domain, count: int) -> list[int]:
        """Give the domain `count` more 16 MiB extents after its RMA; returns new pfns."""
        assert dom.phys is not None
        extent = 1 << (EXTENT_ORDER + 12)
        mfns = self.alloc.alloc_extents(count * extent, extent, f"extents of d{dom.domid}")
        first_pfn = dom.phys.end_pfn
        dom.phys = dom.phys.with_extents(mfns)  # keeps pages moved by grant transfer
        for m in mfns:
            self.rec.emit(
                K.MEM_ALLOC, self.now(), -1, dom.domid, -1, m, 1 << EXTENT_ORDER, text="extent"
            )
        return [first_pfn + (i << EXTENT_ORDER) for i in range(count)]

    def allocate_htab(self, dom: Domain, memory_bytes: int) -> None:
        """The domain's hashed page table, sized from its memory (see mm.htab_bytes_for)."""
        size = htab_bytes_for(memory_bytes)
        mfn = self.alloc.alloc_aligned(size, size, f"HTAB of d{dom.domid}")
        dom.htab_maddr = mfn << 12
        dom.htab_bytes = size
        self.rec.emit(K.MEM_ALLOC, self.now(), -1, dom.domid, -1, mfn, size >> 12, text="htab")
        self.memory.zero(dom.htab_maddr, size)
        dom.sdr1 = sdr1_encode(dom.htab_maddr, size)
        for v in dom.vcpus:
            v.arch.tr.sdr1 = dom.sdr1

    def _init_shared_info(self, dom: Domain) -> None:
        si = dom.shared_info_maddr
        self.memory.zero(si, SHARED_INFO.size)
        SHARED_INFO.write(self.memory, si, "boot_timebase", 0)
        # update_domain_wallclock_time: the wall clock at system time 0, under wc_version.
        SHARED_INFO.write(self.memory, si, "wc_version", 1)
        SHARED_INFO.write(self.memory, si, "wc_sec", BOOT_WALLCLOCK_S)
        SHARED_INFO.write(self.memory, si, "wc_nsec", 0)
        SHARED_INFO.write(self.memory, si, "wc_version", 2)
        for v in dom.vcpus:
            v.arch.tr.set_hid4(dom.hid4)

    def set_max_vcpus(self, dom: Domain, n: int) -> None:
        for i in range(len(dom.vcpus), n):
            v = dom.add_vcpu(i)
            v.arch.tr.set_hid4(dom.hid4) if dom.hid4 else None
            v.arch.tr.sdr1 = dom.sdr1
            v.processor = self.sched.add_vcpu(dom.domid, i, dom.affinity.get(i)).processor
            self.rec.emit(K.VCPU_CREATE, self.now(), -1, dom.domid, i, v.processor)
        dom.max_vcpus = n

    def set_vcpu_context(self, v: Vcpu, regs: dict[int, int], msr: int) -> None:
        """Initial registers (-1 = PC) for a VCPU that has not run yet."""
        v.arch.boot_regs = dict(regs)
        v.arch.hw = None  # fresh registers: a new Unicorn instance on first load
        v.arch.tr.msr = msr | MSR_SF
        v.initialised = True
        if v.vcpu_id == 0:
            v.is_up = True  # VCPU 0 starts with the domain; the others by VCPUOP_up

    def build_dom0(
        self,
        *,
        memory: int,
        rma: int,
        vcpus: int,
        weight: int,
        cap: int,
        kernel: KernelImage,
        devtree: DomainDevtreeSpec,
    ) -> Domain:
        """Xen's own dom0 builder (domain_build.c): RMA, extents, HTAB, devtree, VCPU 0.

        `devtree` says what dom0's /chosen and /xen hold; the tree itself is the
        firmware's, fixed up for dom0 (`build_dom0_devtree`, ofd_dom0_fixup)."""
        dom = self.create_domain("Domain-0", 0, privileged=True)
        self.set_max_vcpus(dom, vcpus)
        self.allocate_rma(dom, rma)
        extents = (memory - rma) >> 24
        if extents:
            self.add_extents(dom, extents)
        dom.max_pages = memory >> 12
        self.allocate_htab(dom, memory)
        for v in dom.vcpus:
            v.arch.tr.set_hid4(dom.hid4)
            v.arch.tr.sdr1 = dom.sdr1
        self.sched.set_params(0, weight=weight, cap=cap)
        dom.weight, dom.cap = weight, cap
        self.rec.emit(K.DOM_CREATE, 0, -1, 0, -1, memory, vcpus, dom.rma_mfn << 12, rma)
        blob = build_dom0_devtree(self.machine.devtree, devtree)
        for gpa, data in ((kernel.load_gpa, kernel.image), (kernel.devtree_gpa, blob)):
            for off in range(0, len(data), 4096):
                self.memory.write(dom.gpa_to_maddr(gpa + off), data[off : off + 4096])
        for v in dom.vcpus:
            self.set_vcpu_context(
                v, {3: kernel.devtree_gpa, 4: kernel.load_gpa, -1: kernel.entry}, MSR_SF
            )
        self.unpause(dom)
        return dom

    def vcpu_of(self, domid: int, vcpu_id: int) -> Vcpu:
        return self.domains[domid].vcpus[vcpu_id]

    def unpause(self, dom: Domain) -> None:
        if dom.state in (DomainState.CREATED, DomainState.PAUSED):
            dom.state = DomainState.RUNNING
            now = self.now()
            self.rec.emit(K.DOM_START, now, self.running_cpu(), dom.domid, -1)
            for v in dom.vcpus:
                if v.is_up:
                    self.vcpu_wake(v, now)

    def pause(self, dom: Domain) -> None:
        """domain_pause: its VCPUs stop at once (a running one at the end of its slice)
        and nothing wakes them until `unpause`; their state is kept."""
        if dom.state != DomainState.RUNNING:
            return
        dom.state = DomainState.PAUSED
        now = self.now()
        self.rec.emit(K.DOM_PAUSE, now, self.running_cpu(), dom.domid, -1)
        for v in dom.vcpus:
            self._stop_vcpu(v, now)

    def vcpu_up(self, v: Vcpu) -> None:
        if v.is_up:
            return
        v.is_up = True
        now = self.now()
        self.rec.emit(K.VCPU_UP, now, self.running_cpu(), v.domain.domid, v.vcpu_id)
        if v.domain.state == DomainState.RUNNING:
            self.vcpu_wake(v, now)

    def shutdown(self, dom: Domain, reason: int) -> None:
        """domain_shutdown: the domain stops with `reason` (SHUTDOWN_*, recorded by name)
        and dom0 is told with VIRQ_DOM_EXC, as Xen 3.1's __domain_finalise_shutdown does;
        its toolstack reads the reason with getdomaininfo."""
        if dom.state in (DomainState.SHUTDOWN, DomainState.DYING):
            return
        dom.state = DomainState.SHUTDOWN
        dom.shutdown_reason = reason
        now = self.now()
        self.rec.emit(
            K.DOM_SHUTDOWN,
            now,
            self.running_cpu(),
            dom.domid,
            -1,
            reason,
            text=SHUTDOWN_NAMES.get(reason, str(reason)),
        )
        for v in dom.vcpus:
            v.going_down = True
            v.timer_generation += 1
            self._stop_vcpu(v, now)
        self.on_domain_dead(dom)
        dom0 = self.domains.get(0)
        if dom0 is not None and dom0 is not dom:
            self.send_virq(dom0.vcpus[0], VIRQ_DOM_EXC)

    def domain_crash(self, dom: Domain, why: str, pc: int) -> None:
        """A guest did something unrecoverable: record it and stop the domain."""
        self.rec.emit(K.DOM_CRASH, self.now(), self.running_cpu(), dom.domid, -1, pc, text=why)
        self.shutdown(dom, 3)

    def _stop_vcpu(self, v: Vcpu, now: int) -> None:
        cpu = self.running_cpu()
        if v.runstate == Runstate.RUNNING:
            p = self.pcpus[v.processor]
            p.kick(cpu if cpu >= 0 else p.cpu)
        elif v.runstate in (Runstate.RUNNABLE, Runstate.BLOCKED):
            self.sched.offline(v.domain.domid, v.vcpu_id, now)
            self.set_runstate(v, Runstate.OFFLINE, now, cpu)
            self.apply_kicks(self.sched.take_kicks(), cpu)

    def destroy(self, dom: Domain) -> None:
        """Kill a shut-down domain (`domain_lifetime.domain_kill`): its memory goes now,
        the domain itself once no other domain maps its frames."""
        if any(v.runstate == Runstate.RUNNING for v in dom.vcpus):
            raise RuntimeError(f"domain {dom.domid} still has a running VCPU")
        domain_kill(self, dom)

    def drop_timers(self, domid: int) -> None:
        """Forget the set_timer_op deadlines of a domain that is going away."""
        self._timers = [t for t in self._timers if t[1] != domid]
        heapq.heapify(self._timers)

    # -- runstates, wake, kicks -----------------------------------------------------------
    def set_runstate(self, v: Vcpu, state: int, now: int, cpu: int) -> None:
        if v.runstate == state:
            return
        self.rec.emit(K.SCHED_RUNSTATE, now, cpu, v.domain.domid, v.vcpu_id, state, v.runstate)
        if v.runstate == Runstate.RUNNING:
            v.running_ns += now - v.runstate_since
        v.runstate = state
        v.runstate_since = now

    def vcpu_wake(self, v: Vcpu, now: int) -> None:
        """Make a blocked/offline VCPU runnable (vcpu_wake) and tickle a CPU."""
        if v.blocking:
            v.blocking = False  # the block in progress will not be committed
            return
        delay = now - int(self.env.now)
        if delay > 0:
            # Raised inside a running slice: take effect at that simulated instant, so
            # no other CPU can see the VCPU runnable earlier than it became so.
            self.post_at(now, lambda: self._wake_now(v, now))
            return
        self._wake_now(v, now)

    def _wake_now(self, v: Vcpu, now: int) -> None:
        if not v.is_up or v.domain.state != DomainState.RUNNING or v.going_down:
            return
        if v.runstate not in (Runstate.BLOCKED, Runstate.OFFLINE):
            return
        cpu = self.running_cpu()
        self.set_runstate(v, Runstate.RUNNABLE, now, cpu)
        kicks = self.sched.wake(v.domain.domid, v.vcpu_id, now)
        # The scheduler decides BOOST (only an UNDER, unparked VCPU gets it).
        boosted = self.sched.vcpu(v.domain.domid, v.vcpu_id).pri == Pri.BOOST
        self.rec.emit(K.SCHED_WAKE, now, cpu, v.domain.domid, v.vcpu_id, int(boosted))
        self.apply_kicks(kicks + self.sched.take_kicks(), cpu)

    def apply_kicks(self, cpus: list[int], from_cpu: int) -> None:
        for c in sorted(set(cpus)):
            self.pcpus[c].kick(from_cpu if from_cpu >= 0 else c)

    def commit_vcpu_slice_end(self, v: Vcpu, now: int) -> bool:
        """Apply a block/yield/down requested during the slice; True if still runnable."""
        cpu = v.processor
        if v.going_down or not v.is_up or v.domain.state != DomainState.RUNNING:
            v.going_down = False
            v.blocking = False
            self.set_runstate(v, Runstate.OFFLINE, now, cpu)
            return False
        if v.yielding:
            v.yielding = False
            return True
        if v.blocking:
            v.blocking = False
            if self.events_need_delivery(v):
                return True
            self.rec.emit(K.SCHED_BLOCK, now, cpu, v.domain.domid, v.vcpu_id)
            self.set_runstate(v, Runstate.BLOCKED, now, cpu)
            return False
        return v.runstate == Runstate.RUNNING

    def events_need_delivery(self, v: Vcpu) -> bool:
        return bool(self.memory.read_u8(v.vcpu_info_maddr))

    # -- event delivery ----------------------------------------------------------------------
    def evtchn_set_pending(self, dom: Domain, port: int) -> None:
        """Mark a port pending in the domain's shared_info and kick the notified VCPU."""
        p = dom.evtchn.ports[port]
        vid = p.notify_vcpu if p.notify_vcpu < len(dom.vcpus) else 0
        v = dom.vcpus[vid]
        now = self.now()
        self.rec.emit(K.EVTCHN_PENDING, now, self.running_cpu(), dom.domid, vid, port)
        if (
            evtchn.set_pending(self.memory, dom.shared_info_maddr, v.vcpu_info_maddr, port)
            or v.polling
            and port in v.polling
        ):
            self.vcpu_kick(v, now)

    def vcpu_kick(self, v: Vcpu, now: int) -> None:
        """Get an event to a VCPU: wake it if blocked, IPI its CPU if it runs elsewhere."""
        if v.polling:
            v.polling = ()
            v.poll_deadline = None
        if v.runstate == Runstate.BLOCKED or v.blocking:
            self.vcpu_wake(v, now)
            return
        if v.runstate == Runstate.RUNNING:
            p = self.pcpus[v.processor]
            cpu = self.running_cpu()
            if p.cpu != cpu:
                p.send_ipi(1, cpu if cpu >= 0 else p.cpu)

    def send_virq(self, v: Vcpu, virq: int) -> None:
        port = v.virq_ports.get(virq)
        if port is not None:
            self.evtchn_set_pending(v.domain, port)

    def device_interrupt(self, source: int) -> None:
        """A device raised MPIC `source`: Xen takes it (LPES0 = 0) and forwards it to the
        domain that bound it as a pirq; an unbound interrupt is counted and dropped."""
        cpu = self.machine.mpic.raise_irq(source)
        self.rec.emit(K.IRQ_RAISE, self.now(), self.running_cpu(), -1, -1, source, cpu)
        self.machine.mpic.ack(cpu, source)
        bound = self.pirqs.get(source)
        if bound is not None:
            dom = self.domains.get(bound[0])
            if dom is not None and dom.state == DomainState.RUNNING:
                self.evtchn_set_pending(dom, bound[1])

    # -- timers ------------------------------------------------------------------------------
    def set_timer(self, v: Vcpu, deadline: int | None, core: Core | None) -> None:
        """set_timer_op: one-shot VIRQ_TIMER at `deadline` ns (None cancels)."""
        v.timer_generation += 1
        v.timer_deadline = deadline
        if deadline is None:
            return
        gen = v.timer_generation
        heapq.heappush(self._timers, (deadline, v.domain.domid, v.vcpu_id, gen))
        now = self.now()
        self.rec.emit(K.TIMER_SET, now, self.running_cpu(), v.domain.domid, v.vcpu_id, deadline)
        delay = max(deadline - int(self.env.now), 0)
        if self.jitter is not None:
            delay += self.jitter.timer_delay_ns()
        ev = timeout(self.env, delay)
        ev.callbacks.append(lambda _e: self._timer_fire(v, gen, deadline))
        if core is not None and core.state is v.arch:
            core.limit_budget_to(max(deadline, now))

    def next_timer(self, now: int) -> int | None:
        """Earliest pending VCPU timer (set_timer_op) not yet fired, for slice bounds."""
        heap = self._timers
        while heap:
            deadline, domid, vid, gen = heap[0]
            dom = self.domains.get(domid)
            live = (
                dom is not None
                and vid < len(dom.vcpus)
                and dom.vcpus[vid].timer_generation == gen
                and deadline >= now
            )
            if live:
                return deadline
            heapq.heappop(heap)
        return None

    def post_at(self, t: int, effect: Callable[[], None]) -> None:
        """Make `effect` (a wake, an IPI raised inside a slice) happen at simulated time
        `t`. Until then no busy CPU's slice runs past `t` (see `next_post`), so a CPU
        whose slice has not started yet is told in time."""
        heapq.heappush(self._posts, t)
        ev = timeout(self.env, t - int(self.env.now))
        ev.callbacks.append(lambda _e: self._post_due(effect))

    def _post_due(self, effect: Callable[[], None]) -> None:
        heapq.heappop(self._posts)
        effect()

    def next_post(self) -> int | None:
        """Earliest time a posted effect is still due, if any."""
        return self._posts[0] if self._posts else None

    def others_busy(self, cpu: int) -> bool:
        return self.busy_cpus - (self.pcpus[cpu].current is not None) > 0

    def _timer_fire(self, v: Vcpu, gen: int, deadline: int) -> None:
        # A paused domain's timers fire too (Xen's vcpu_singleshot_timer_fn does not look
        # at pausing): the VIRQ waits pending and is delivered once it is unpaused.
        if gen != v.timer_generation or v.domain.state not in _TIMERS_FIRE:
            return
        v.timer_deadline = None
        self.rec.emit(K.TIMER_FIRE, int(self.env.now), -1, v.domain.domid, v.vcpu_id, deadline)
        self.send_virq(v, VIRQ_TIMER)

    def poll_timeout(self, v: Vcpu, deadline: int) -> None:
        ev = timeout(self.env, max(deadline - int(self.env.now), 0))

        def fire(_e: simpy.Event) -> None:
            if v.poll_deadline == deadline and v.polling:
                v.polling = ()
                v.poll_deadline = None
                self.vcpu_wake(v, int(self.env.now))

        ev.callbacks.append(fire)

    # -- core callbacks ---------------------------------------------------------------------
    def _external_pending(self, core: Core) -> bool:
        v = core.state.owner if core.state is not None else None
        if not isinstance(v, Vcpu):
            return False
        return bool(self.memory.read_u8(v.vcpu_info_maddr))

    def _on_exception(self, core: Core, vector: int) -> None:
        v = core.state.owner if core.state is not None else None
        assert isinstance(v, Vcpu)
        now = core.now_ns()
        st = core.state
        assert st is not None
        self.rec.emit(
            K.EXC_DELIVER,
            now,
            core.cpu_id,
            v.domain.domid,
            v.vcpu_id,
            vector,
            st.srr0,
            st.srr1,
            st.dar,
            VECTOR_NAMES.get(vector) or hex(vector),
        )
        core.charge(costs.EXCEPTION_DELIVERY)
        if vector == VEC_EXTERNAL:
            sel = self.memory.read_u64(v.vcpu_info_maddr + evtchn.PENDING_SEL_OFF)
            self.rec.emit(K.EVTCHN_UPCALL, now, core.cpu_id, v.domain.domid, v.vcpu_id, sel)

    def _on_rfid(self, core: Core) -> None:
        v = core.state.owner if core.state is not None else None
        if isinstance(v, Vcpu):
            self.rec.emit(
                K.EXC_RFID, core.now_ns(), core.cpu_id, v.domain.domid, v.vcpu_id, core.pc, core.msr
            )

    def on_vcpu_loaded(self, core: Core, v: Vcpu, now: int) -> None:
        """Called after a context switch loads `v` on `core` at `now`."""
        self.update_vcpu_system_time(v, now)

    def update_vcpu_system_time(self, v: Vcpu, now: int) -> None:
        """Write `v`'s vcpu_time_info as x86 Xen 3.1's update_vcpu_system_time does: the
        version is odd while the fields change and even after (a seqlock for the guest);
        tsc_timestamp is the timebase at `now`, system_time is `now` in ns since boot."""
        mem, base = self.memory, v.vcpu_info_maddr
        version = VCPU_INFO.read(mem, base, "time_version")
        VCPU_INFO.write(mem, base, "time_version", (version + 1) | 1)
        VCPU_INFO.write(mem, base, "tsc_timestamp", now * self.timebase_hz // 1_000_000_000)
        VCPU_INFO.write(mem, base, "system_time", now)
        VCPU_INFO.write(mem, base, "tsc_to_system_mul", self.tsc_to_system_mul)
        VCPU_INFO.write(mem, base, "tsc_shift", self.tsc_shift)
        VCPU_INFO.write(mem, base, "time_version", ((version + 1) | 1) + 1)

    # -- errors -------------------------------------------------------------------------------
    def alloc_failure(self, dom: Domain | None, err: AllocError) -> None:
        self.rec.emit(
            K.MEM_FAIL,
            self.now(),
            self.running_cpu(),
            dom.domid if dom is not None else -1,
            -1,
            text=str(err),
        )
