"""Xen's per-physical-CPU loop: one SimPy process per core.

Each pass: take the HDEC tick and IPIs, reschedule if needed, then run the current VCPU's
code on the emulated core for one slice and let simulated time advance by what it cost.
A slice ends at the earliest of: the credit time slice, the next 10 ms tick, the VCPU's
DEC, the next Xen timer of any VCPU, and - while another CPU is busy too - `QUANTUM_NS`.
A CPU's slice runs in one go, so what another busy CPU posts to it mid-slice (an IPI, a
BOOSTed wake) is seen at the end of that slice: within one quantum.  Idle CPUs react at
once, since they wait on the event itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import simpy

from framework.errors import GuestFault, SimulationError, fault_reason
from framework.hw970.regs import VEC_HDECREMENTER
from framework.sim_events import timeout
from framework.trace.ids import K
from framework.xen import costs
from framework.xen.domain import Vcpu
from framework.xen.public.vcpu import Runstate

if TYPE_CHECKING:
    from framework.xen.hypervisor import Hypervisor

MIN_SLICE_NS: Final = 2_000  # progress guarantee when events are due at the same instant
IPI_CALL_FUNCTION: Final = 0
IPI_EVENT_CHECK: Final = 1


class PhysicalCpu:
    """Xen's view of one physical CPU and the process that drives its core."""

    def __init__(self, xen: Hypervisor, cpu: int) -> None:
        self.xen = xen
        self.cpu = cpu
        self.core = xen.machine.cores[cpu]
        self.current: Vcpu | None = None
        self.need_resched = True
        self.in_slice = False
        self.slice_end_ns = 0
        self.next_tick_ns = xen.tick_ns
        self.wakeup: simpy.Event | None = None
        self._tick_armed = -1  # the tick time an idle wake-up timeout is pending for
        self.pending_ipis: list[tuple[int, int]] = []  # (ipi, from_cpu)
        self.idle_ns = 0
        self.boundary_cycles = 0

    # -- notifications from elsewhere ----------------------------------------------------
    def kick(self, from_cpu: int) -> None:
        """Ask this CPU to reschedule (Xen's tickle: an event-check IPI when remote)."""
        self.need_resched = True
        if from_cpu != self.cpu:
            self.send_ipi(IPI_EVENT_CHECK, from_cpu)
        elif self.in_slice:
            self.core.request_stop()
        else:
            self._wake_idle()  # a timer/softirq on this CPU found work while it idled

    def send_ipi(self, ipi: int, from_cpu: int) -> None:
        xen = self.xen
        t = xen.now()
        arrive = t
        if xen.jitter is not None:
            arrive += xen.jitter.ipi_delay_ns()
        delay = arrive - int(xen.env.now)
        if delay > 0:
            # Sent from inside a running slice (or delayed by jitter): it reaches the
            # target at that instant.
            xen.post_at(arrive, lambda: self._ipi_arrives(ipi, from_cpu, t))
            return
        self._ipi_arrives(ipi, from_cpu, t)

    def _ipi_arrives(self, ipi: int, from_cpu: int, sent: int) -> None:
        xen = self.xen
        xen.rec.emit(K.IPI_SEND, sent, from_cpu, -1, -1, self.cpu, ipi)
        self.pending_ipis.append((ipi, from_cpu))
        xen.machine.mpic.send_ipi(self.cpu, ipi)
        self._wake_idle()

    def _wake_idle(self) -> None:
        """End the CPU's idle wait, if it is waiting."""
        wakeup = self.wakeup
        if wakeup is not None and not wakeup.triggered:
            wakeup.succeed()

    # -- the process ---------------------------------------------------------------------
    def run(self) -> simpy.events.ProcessGenerator:
        env = self.xen.env
        xen = self.xen
        core = self.core
        clock = core.clock_hz
        while True:
            now = int(env.now)
            if now >= self.next_tick_ns:
                self._tick(now)
            if self.pending_ipis:
                self._take_ipis(now)
            v = self.current
            if v is not None and v.blocking and xen.events_need_delivery(v):
                # SCHEDOP_block found an event by the time it took effect: do_block
                # unblocks at once and nothing is rescheduled.
                v.blocking = False
            if (
                self.need_resched
                or v is None
                or now >= self.slice_end_ns
                or not self._can_continue(v)
            ):
                self._schedule(now)
                v = self.current
            if v is None:
                wakeup = self.wakeup = env.event()
                if self._tick_armed != self.next_tick_ns:
                    # One timeout per tick, not per idle period: it wakes the CPU if it is
                    # still idle then (an idle period often ends early, by a wake).
                    self._tick_armed = self.next_tick_ns
                    timeout(env, self.next_tick_ns - now).callbacks.append(self._tick_due)
                idle_from = now
                self.boundary_cycles = 0  # Xen's work on an idle CPU precedes no guest code
                yield wakeup
                self.wakeup = None
                self.idle_ns += int(env.now) - idle_from
                continue
            end = min(self.slice_end_ns, self.next_tick_ns)
            post = xen.next_post()
            if post is not None:
                if post <= now:
                    # An effect posted for this instant is still queued behind us: let
                    # it happen first (it may be an IPI or a wake for this CPU).
                    yield timeout(env, 0)
                    continue
                # A slice that has not started yet is told in time: it stops where the
                # posted effect (a wake, an IPI, perhaps for this CPU) takes place.
                end = min(end, post)
            # Xen's own work since the last slice (tick, schedule, context switch) runs
            # before the VCPU's first instruction: the slice starts after it.
            xen_cycles = self.boundary_cycles
            if xen.jitter is not None:
                xen_cycles = xen.jitter.scale_cost(xen_cycles)
            xen_ns = xen_cycles * 1_000_000_000 // clock
            self.boundary_cycles = 0
            start = now + xen_ns
            if xen.others_busy(self.cpu):
                # Busy CPUs advance in step: no slice crosses the next multiple of the
                # synchronisation quantum, so what another CPU posts here waits <= q.
                q = xen.sync_quantum_ns
                end = min(end, (now // q + 1) * q)
            timer = xen.next_timer(now)
            if timer is not None:
                end = min(end, max(timer, now + MIN_SLICE_NS))
            dec = core.dec_deadline_ns()
            if dec is not None:
                end = min(end, max(dec, now + 1))
            budget = max((end - start) * clock // 1_000_000_000, 1)
            self.in_slice = True
            xen.slice_cpu = self
            try:
                executed = core.run(budget, start)
            except GuestFault as fault:
                # What the guest's code raised crashes its domain; the run goes on.
                executed = core.executed
                xen.domain_crash(v.domain, fault_reason(fault), core.pc)
            except SimulationError:
                raise
            except Exception as exc:
                # Escaped Xen's or the core's own code during the slice: a simulator bug.
                where = f"cpu{self.cpu} running d{v.domain.domid}v{v.vcpu_id}"
                raise SimulationError(f"{where}: {fault_reason(exc)}") from exc
            finally:
                self.in_slice = False
                xen.slice_cpu = None
            cycles = executed + core.extra_cycles
            dt = max(xen_ns + cycles * 1_000_000_000 // clock, 1)
            v.cpu_time_ns += dt
            yield timeout(env, dt)

    def _tick_due(self, _ev: simpy.Event) -> None:
        self._wake_idle()

    def _can_continue(self, v: Vcpu) -> bool:
        return not (v.blocking or v.yielding or v.going_down) and v.runstate == Runstate.RUNNING

    # -- tick and IPIs ---------------------------------------------------------------------
    def _tick(self, now: int) -> None:
        xen = self.xen
        while self.next_tick_ns <= now:
            self.next_tick_ns += xen.tick_ns
        v = self.current
        dom, vid = (v.domain.domid, v.vcpu_id) if v is not None else (-1, -1)
        xen.rec.emit(
            K.EXC_DELIVER,
            now,
            self.cpu,
            dom,
            vid,
            VEC_HDECREMENTER,
            0,
            0,
            0,
            "hypervisor_decrementer",
        )
        self.boundary_cycles += costs.HDEC_TICK
        if xen.sched.tick(self.cpu, now):
            self.need_resched = True
        if v is not None:
            sv = xen.sched.current(self.cpu)
            xen.rec.emit(K.SCHED_TICK, now, self.cpu, dom, vid, sv.credit if sv else 0)
        xen.apply_kicks(xen.sched.take_kicks(), self.cpu)

    def _take_ipis(self, now: int) -> None:
        xen = self.xen
        for ipi, _src in self.pending_ipis:
            xen.rec.emit(K.IPI_RECV, now, self.cpu, -1, -1, ipi)
            xen.machine.mpic.ack_ipi(self.cpu, ipi)
        self.pending_ipis.clear()

    # -- scheduling ------------------------------------------------------------------------
    def _schedule(self, now: int) -> None:
        xen = self.xen
        sched = xen.sched
        self.need_resched = False
        prev = self.current
        if prev is not None:
            prev_runnable = xen.commit_vcpu_slice_end(prev, now)
            sched.deschedule(self.cpu, now, prev_runnable)
            if not prev_runnable:
                if prev.runstate == Runstate.OFFLINE:
                    sched.offline(prev.domain.domid, prev.vcpu_id, now)
                else:
                    sched.block(prev.domain.domid, prev.vcpu_id, now)
        nxt_sv, slice_ns = sched.pick_next(self.cpu, now)
        xen.apply_kicks(sched.take_kicks(), self.cpu)
        nxt = xen.vcpu_of(nxt_sv.dom, nxt_sv.vcpu) if nxt_sv is not None else None
        self.boundary_cycles += costs.SCHEDULE
        if nxt is prev:
            self.slice_end_ns = now + slice_ns
            return
        if prev is not None:
            self.core.save()
            if prev.runstate == Runstate.RUNNING:
                xen.set_runstate(prev, Runstate.RUNNABLE, now, self.cpu)
        self.xen.busy_cpus += (nxt is not None) - (prev is not None)
        self.current = nxt
        pd, pv = (prev.domain.domid, prev.vcpu_id) if prev is not None else (-1, -1)
        if nxt is None:
            xen.rec.emit(K.SCHED_SWITCH, now, self.cpu, -1, -1, pd, pv)
            return
        if nxt.processor != self.cpu:
            xen.rec.emit(
                K.SCHED_MIGRATE,
                now,
                self.cpu,
                nxt.domain.domid,
                nxt.vcpu_id,
                nxt.processor,
                self.cpu,
            )
            nxt.processor = self.cpu
        xen.rec.emit(K.SCHED_SWITCH, now, self.cpu, nxt.domain.domid, nxt.vcpu_id, pd, pv)
        xen.set_runstate(nxt, Runstate.RUNNING, now, self.cpu)
        self.boundary_cycles += costs.CONTEXT_SWITCH
        self.core.load(nxt.arch)
        xen.on_vcpu_loaded(self.core, nxt, now)
        self.slice_end_ns = now + slice_ns
