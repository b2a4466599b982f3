"""The guest OS on a machine: binds the kernel's native routines (start-up, per-port event
dispatch, fault handling) and keeps each domain's `GuestKernel`.

Start-up brings up what drivers need (page pool, grant table, xenbus, console), then the
devices: a domU probes its frontends; dom0 starts the backends and hands over to its user
space (`framework.dom0`), which the composition root injects as `Dom0UserSpace`.  The
workloads (compute, timer, console lines, pingpong) start per VCPU.
"""

from __future__ import annotations

from collections.abc import Callable

from framework.errors import KernelError
from framework.guest.blkback import BlkBack
from framework.guest.control import ShutdownControl
from framework.guest.costs import NATIVE_ROUTINE
from framework.guest.cpu_hotplug import CpuHotplug
from framework.guest.dom0_interface import Dom0Hardware, Dom0UserSpace
from framework.guest.frontends import FrontendBus
from framework.guest.kernel import (
    KERNEL_MSR,
    LARGE,
    POOL_START,
    POOL_TOP_RESERVE,
    PTE_M,
    PTE_PP_RW,
    GuestKernel,
    install_io_segment,
    kernel_vsid,
)
from framework.guest.kmem import KernelMemory
from framework.guest.netback import NetBack
from framework.guest.pages import PagePool
from framework.guest.pingpong import Pingpong
from framework.guest.runtime import (
    AREA_BASE,
    AREA_CONT,
    AREA_MSR,
    AREA_SHINFO,
    AREA_SIZE,
    AREA_VCPUINFO,
    KERNEL_BASE,
    NATIVES,
    Runtime,
    build_runtime,
    native_address,
)
from framework.guest.sharedmem import SharedMem
from framework.guest.suspend import (
    ResumeRecord,
    begin_suspend,
    capture_kernel,
    read_record,
    restore_pool,
    return_to_interrupted,
)
from framework.guest.suspend_record import RECORD_GPA
from framework.guest.xenbus import RingXenbus
from framework.hw970.core import Core
from framework.hw970.machine import Machine
from framework.hw970.mmu import PTE_L, PTE_V, SLB_L, pte_avpn, pteg_index
from framework.trace.ids import K
from framework.trace.recorder import Recorder
from framework.xen.public.arch_powerpc import FOREIGN_GPA_BASE
from framework.xen.public.devtree import WorkloadValue, parse_domain_devtree, workload_groups
from framework.xen.public.papr import H_ENTER, H_SUCCESS
from framework.xen.public.sched import (
    SCHED_SHUTDOWN,
    SCHEDOP_shutdown,
    SHUTDOWN_crash,
    SHUTDOWN_suspend,
)
from framework.xen.public.vcpu import VCPUOP_up
from framework.xen.public.xen import (
    HYPERVISOR_sched_op,
    HYPERVISOR_vcpu_op,
    xen_mark,
)

#: A start hook that replaces the standard drivers of a kernel (tests inject their own).
KernelStart = Callable[[GuestKernel, Core], None]


class GuestOS:
    """Binds the kernel's native routines on a machine and keeps each domain's kernel."""

    def __init__(
        self,
        machine: Machine,
        rec: Recorder,
        *,
        dom0: Dom0UserSpace | None = None,
        hardware: Dom0Hardware | None = None,
        backend_start: KernelStart | None = None,
        frontend_probe: KernelStart | None = None,
    ) -> None:
        """`dom0`: dom0's user space, started when dom0's kernel is up; `hardware`: the
        machine's devices for dom0's backends.  `backend_start` / `frontend_probe` replace
        the standard backends (blkback, netback) / frontends (a domU's `FrontendBus`)."""
        self.machine = machine
        self.rec = rec
        self.runtime: Runtime = build_runtime()
        #: The kernel of each live domain, by domid.
        self.kernels: dict[int, GuestKernel] = {}
        #: The same kernels by where they live: the machine address of their RMA (what a
        #: native routine finds from the running context's RMOR).
        self._resident: dict[int, GuestKernel] = {}
        #: Kernels of destroyed domains, oldest first: what they did, for the run's report.
        self.finished: list[GuestKernel] = []
        self.dom0 = dom0
        #: Progress of each timer, console and pingpong workload, by (domid, workload):
        #: ticks taken, lines written, round trips or answers (`timer.<i>`, `console.<i>`,
        #: `pingpong`, the devtree's names), so a run can say which never moved.
        self.progress: dict[tuple[int, str], int] = {}
        #: Each domU kernel's grants (`grants:` of the scenario), both ends, by domid (kept
        #: after the domain goes, like `finished`, for the run's report).
        self.sharedmem: dict[int, SharedMem] = {}
        routines = {
            "kinit": self._kinit,
            "evtchn_dispatch": self._evtchn_dispatch,
            "program_check": self._program_check,
            "storage_fault": self._storage_fault,
            "decrementer": self._decrementer,
            "suspend": self._suspend,
            "resume": self._resume,
        }
        assert set(routines) == set(NATIVES)
        self.current_core: Core | None = None
        #: The translation cache of the native call in progress (see `_CurrentMemory`).
        self.current_memory_cache: KernelMemory | None = None
        self.current_memory = _CurrentMemory(self)
        #: dom0's view of the machine's I/O devices.
        self.hardware = hardware
        #: Run when dom0's / a domU's kernel has its xenbus up (None: the standard drivers).
        self.backend_start = backend_start
        self.frontend_probe = frontend_probe
        for name, fn in routines.items():
            addr = native_address(name)
            routine = self._entered(fn)
            machine.bind_native(addr, routine)
            machine.bind_native(KERNEL_BASE | addr, routine)

    def _entered(self, fn: Callable[[Core], None]) -> Callable[[Core], None]:
        def routine(core: Core) -> None:
            outer = self.current_core
            self.current_core = core
            self.current_memory_cache = None
            try:
                fn(core)
            finally:
                self.current_core = outer
                self.current_memory_cache = None

        return routine

    def kernel(self, core: Core) -> GuestKernel:
        assert core.state is not None
        return self._resident[core.state.tr.rma_base]

    def forget_domain(self, domid: int) -> None:
        """The domain is destroyed (its memory freed): its kernel goes with it, so a
        domain built later in the same memory boots a kernel of its own."""
        k = self.kernels.pop(domid, None)
        if k is None:
            return
        for base in [b for b, r in self._resident.items() if r is k]:
            del self._resident[base]
        self.finished.append(k)

    def all_kernels(self) -> list[GuestKernel]:
        """Every kernel of the run: those of destroyed domains first, then the live ones."""
        return [*self.finished, *self.kernels.values()]

    # -- natives ---------------------------------------------------------------------------
    def _kinit(self, core: Core) -> None:
        core.charge(NATIVE_ROUTINE * 20)
        st = core.state
        assert st is not None
        vid = st.pir
        key = st.tr.rma_base
        # VCPU 0 boots the kernel (a new domain, whatever ran in this memory before);
        # the others join it once it started them with VCPUOP_up.
        first = vid == 0
        if first:
            blob = KernelMemory(core).read(core.gpr(3), 16384)
            k = GuestKernel(self, parse_domain_devtree(blob), devtree_gpa=core.gpr(3))
            self.kernels[k.domid] = k
            self._resident[key] = k
        else:
            k = self._resident[key]
        spec = k.spec
        area = AREA_BASE + AREA_SIZE * vid
        core.set_gpr(13, area)
        mem = KernelMemory(core)
        shinfo = spec.shared_info_gpa
        for off, value in (
            (AREA_SHINFO, shinfo),
            (AREA_VCPUINFO, shinfo + 48 * vid),
            (AREA_MSR, KERNEL_MSR),
        ):
            mem.write(area + off, value.to_bytes(8, "big"))
        self._install_slb(core, k)
        if first:
            k.init_binding_masks(core)
            self._map_linear(core, k)
            self._start_io(core, k)
            k.console(
                core,
                f"xen970 kernel: domain {spec.domid}, {spec.nr_vcpus} VCPU(s), "
                f"{spec.memory_bytes >> 20} MiB",
            )
        wl = spec.workload
        compute = vid in _int_list(wl.get("compute-vcpus"))
        cont = self.runtime.virt("compute_loop" if compute else "idle_loop")
        mem.write(area + AREA_CONT, cont.to_bytes(8, "big"))
        if first:
            self._start_channels(core, k)
        self._start_workloads(core, k, vid)
        if first:
            for other in range(1, spec.nr_vcpus):
                k.hypercall(core, xen_mark(HYPERVISOR_vcpu_op), VCPUOP_up, other)
            if spec.privileged and self.dom0 is not None:
                self.dom0.boot(k, core)

    def _start_io(self, core: Core, k: GuestKernel) -> None:
        """Page pool, grant table, xenbus and console: what drivers need (VCPU 0, once)."""
        spec = k.spec
        if k.pool is None:
            k.pool = PagePool(POOL_START, spec.rma_size - POOL_TOP_RESERVE)
        if spec.foreign_map is not None:
            k.add_io_segment(core, FOREIGN_GPA_BASE)
        k.setup_grant_table(core)
        if spec.privileged:
            if self.dom0 is not None:
                k.xenbus = self.dom0.start_daemons(k, core)
            if self.backend_start is not None:
                self.backend_start(k, core)
            elif self.hardware is not None:
                k.blkback, k.netback = BlkBack(k), NetBack(k)
                k.blkback.start(core)
                k.netback.start(core)
            return
        if spec.console_evtchn:
            k.port_handlers[spec.console_evtchn] = k.on_console_event
        if spec.store_evtchn:
            xb = RingXenbus(k, spec.store_gpa, spec.store_evtchn)
            k.xenbus = xb
            k.port_handlers[spec.store_evtchn] = xb.on_event
            k.control = ShutdownControl(k)
            k.control.register("suspend", lambda c: begin_suspend(k, c, self.runtime))
            k.control.start(core)
            if self.frontend_probe is not None:
                self.frontend_probe(k, core)
            else:
                if k.frontends is None:
                    k.frontends = FrontendBus(k)
                k.frontends.start(core)
            shm = SharedMem.from_devtree(k)
            if shm.granters or shm.peers:
                self.sharedmem[k.domid] = shm
                shm.start(core)
            if spec.nr_vcpus > 1:
                k.cpu_hotplug = CpuHotplug(k)
                k.cpu_hotplug.start(core)

    def _install_slb(self, core: Core, k: GuestKernel) -> None:
        assert core.state is not None
        tr = core.state.tr
        for i, seg in enumerate(range(0, k.spec.memory_bytes, 1 << 28)):
            esid = (KERNEL_BASE | seg) >> 28
            rb = (esid << 28) | 0x8000000 | i
            tr.slbmte((kernel_vsid(esid) << 12) | SLB_L, rb)
        for index, esid in enumerate(k.io_segments, start=1):
            install_io_segment(tr, esid, index)
        core.flush_tlb()

    def _map_linear(self, core: Core, k: GuestKernel) -> None:
        """H_ENTER one 16 MiB PTE per 16 MiB of memory (the pinned linear map)."""
        spec = k.spec
        n_ptegs = 1 << (spec.htab_log2 - 7)
        for gpa in range(0, spec.memory_bytes, LARGE):
            ea = KERNEL_BASE | gpa
            vsid = kernel_vsid(ea >> 28)
            ptex = pteg_index(vsid, ea, 24, False, n_ptegs) * 8
            hi = (pte_avpn(vsid, ea) << 7) | PTE_L | PTE_V
            lo = gpa | PTE_M | PTE_PP_RW
            rc = k.hypercall(core, H_ENTER, 0, ptex, hi, lo)
            if rc != H_SUCCESS:
                raise RuntimeError(
                    f"d{spec.domid}: H_ENTER of the linear map at {gpa:#x} failed with {rc}"
                )

    def _start_channels(self, core: Core, k: GuestKernel) -> None:
        """The pingpong channel, set up once on VCPU 0 before any other VCPU is up.

        Its handler is the kernel's (any VCPU may dispatch the port), and the port is
        bound to its VCPU at once: a peer's first event may arrive before that VCPU is up,
        and it then waits in that VCPU's pending selector instead of reaching VCPU 0 while
        nothing there answers it (the pong side's events were lost that way)."""
        wl = k.spec.workload
        if wl.get("pingpong-role"):
            k.pingpong = Pingpong(
                k,
                self.progress,
                str(wl["pingpong-role"]),
                _workload_int(wl["pingpong-peer"], "pingpong-peer"),
                rounds=_workload_int(wl.get("pingpong-rounds", 0), "pingpong-rounds"),
                vcpu=_workload_int(wl.get("pingpong-vcpu", 0), "vcpu"),
            )
            k.pingpong.start(core, _workload_int(wl["pingpong-port"], "pingpong-port"))

    def _start_workloads(
        self, core: Core, k: GuestKernel, vid: int, rec: ResumeRecord | None = None
    ) -> None:
        """The per-VCPU workloads of VCPU `vid`: each timer at its own rate, console lines;
        after a restore, from the record: where each was, its deadline moved by the time
        the domain spent saved."""
        wl = k.spec.workload
        first: dict[str, int | None] = {}
        if rec is not None:
            delta = core.now_ns() - rec.suspend_ns
            first = {tag: deadline + delta for v, deadline, tag in rec.timers if v == vid}
        for i, params in workload_groups(wl, "timer").items():
            tag = f"timer.{i}"
            if params.get("vcpu", 0) == vid and (rec is None or tag in first):
                hz = _workload_int(params["hz"], "timer hz")
                done = rec.progress.get(tag, 0) if rec is not None else 0
                self._start_ticks(core, k, vid, hz, (k.domid, tag), first.get(tag), done)
        for i, params in workload_groups(wl, "console").items():
            tag = f"console.{i}"
            if params.get("vcpu", 0) == vid and (rec is None or tag in first):
                done = rec.progress.get(tag, 0) if rec is not None else 0
                self._start_console_lines(
                    core, k, vid, params, (k.domid, tag), first.get(tag), done
                )
        shm = self.sharedmem.get(k.domid)
        if shm is not None:
            shm.start_rounds(core, vid)

    def _start_ticks(
        self,
        core: Core,
        k: GuestKernel,
        vid: int,
        hz: int,
        key: tuple[int, str],
        first: int | None = None,
        done: int = 0,
    ) -> None:
        """The timer workload: one `timer.tick` mark every 1/hz s on VCPU `vid` (several
        timers on one VCPU share its VIRQ_TIMER and its set_timer_op deadline queue)."""
        period = 1_000_000_000 // hz
        k.bind_timer(core)
        progress = self.progress
        progress[key] = done
        tag = key[1]

        def tick(c: Core, deadline: int) -> None:
            k.add_timer(c, deadline + period, tick, tag)
            progress[key] += 1
            self.rec.emit(
                K.GUEST_MARK, c.now_ns(), c.cpu_id, k.domid, vid, deadline, text="timer.tick"
            )

        k.add_timer(core, core.now_ns() + period if first is None else first, tick, tag)

    def _start_console_lines(
        self,
        core: Core,
        k: GuestKernel,
        vid: int,
        params: dict[str, WorkloadValue],
        key: tuple[int, str],
        first: int | None = None,
        done: int = 0,
    ) -> None:
        """The console workload: `text` every `every` ns, `count` times (0 = forever)."""
        text, every, count = str(params["text"]), int(str(params["every"])), params["count"]
        written = [done]
        progress = self.progress
        progress[key] = done
        tag = key[1]

        def line(c: Core, deadline: int) -> None:
            k.console(c, text)
            written[0] += 1
            progress[key] = written[0]
            k.emit(c, K.GUEST_MARK, written[0], text="console.line")
            if written[0] != count:
                k.add_timer(c, deadline + every, line, tag)

        k.add_timer(core, core.now_ns() + every if first is None else first, line, tag)

    # -- suspend and resume (`framework.guest.suspend`) ------------------------------------
    def _suspend(self, core: Core) -> None:
        """In `suspend_stub`: the kernel's state into its memory, then the arguments of
        SCHEDOP_shutdown(SHUTDOWN_suspend) for the `sc 1` that follows."""
        core.charge(NATIVE_ROUTINE * 20)
        k = self.kernel(core)
        progress = {name: n for (domid, name), n in self.progress.items() if domid == k.domid}
        record = capture_kernel(k, core, progress, self.sharedmem.get(k.domid))
        KernelMemory(core).write(RECORD_GPA, record)
        core.set_gpr(3, xen_mark(HYPERVISOR_sched_op))
        core.set_gpr(4, SCHEDOP_shutdown)
        core.set_gpr(5, k.xencomm_arg(core, SCHED_SHUTDOWN.pack(reason=SHUTDOWN_suspend)))
        core.set_gpr(6, k.devtree_gpa)

    def _resume(self, core: Core) -> None:
        """After the suspend's `sc 1`: r3 = 1, cancelled (the same kernel goes on); 0, a
        new domain (a new kernel from the devtree in r6 and the suspend record)."""
        core.charge(NATIVE_ROUTINE * 20)
        if core.gpr(3) == 1:
            k = self.kernel(core)
            k.emit(core, K.GUEST_MARK, 1, text="resume")
            if k.control is not None:
                k.control.resumed()
            # Xen dropped the timer deadline when the domain shut down, and events that
            # came meanwhile may wait in rings: re-arm, and look at every port once.
            k.rearm_timers(core)
            # Not the pingpong port: its handler counts events (a look would be a round),
            # and an answer that came meanwhile is still pending for the upcall.
            # Nor a granter's: an event there is taken as the peer's answer.
            skip = {k.pingpong.port} if k.pingpong is not None else set()
            shm = self.sharedmem.get(k.domid)
            skip |= {g.port for g in shm.granters} if shm is not None else set()
            for port, handler in sorted(k.port_handlers.items()):
                if port not in skip:
                    handler(core, port)
        else:
            self._resume_new(core)
        return_to_interrupted(core)

    def _resume_new(self, core: Core) -> None:
        st = core.state
        assert st is not None
        devtree_gpa = core.gpr(6)
        blob = KernelMemory(core).read(devtree_gpa, 16384)
        rec = read_record(core)
        k = GuestKernel(self, parse_domain_devtree(blob), devtree_gpa=devtree_gpa)
        self.kernels[k.domid] = k
        self._resident[st.tr.rma_base] = k
        self._install_slb(core, k)
        k.init_binding_masks(core)
        self._map_linear(core, k)
        k.pool = restore_pool(rec)
        k.console_pending += rec.console_pending
        k.console_typed += rec.console_typed
        if self.frontend_probe is None:
            k.frontends = FrontendBus(k, rec.vbds, core.now_ns() - rec.suspend_ns)
        self._start_io(core, k)
        k.emit(core, K.GUEST_MARK, 0, text="resume")
        k.pingpong = Pingpong.from_record(k, self.progress, rec.pingpong)
        if k.pingpong is not None:
            k.pingpong.resume(core)
        shm = SharedMem.from_record(k, rec.sharedmem)
        if shm.granters:
            self.sharedmem[k.domid] = shm
            shm.resume(core)
        self._start_workloads(core, k, st.pir, rec)

    def _evtchn_dispatch(self, core: Core) -> None:
        core.charge(NATIVE_ROUTINE)
        k = self.kernel(core)
        port = core.gpr(3)
        assert core.state is not None
        self.rec.emit(K.EVTCHN_HANDLED, core.now_ns(), core.cpu_id, k.domid, core.state.pir, port)
        handler = k.port_handlers.get(port)
        if handler is not None:
            handler(core, port)

    def _panic(self, core: Core, what: str) -> None:
        k = self.kernel(core)
        st = core.state
        assert st is not None
        k.console(core, f"Oops: {what} at {st.srr0:#x} (SRR1 {st.srr1:#x}, DAR {st.dar:#x})")
        handle = k.xencomm_arg(core, SCHED_SHUTDOWN.pack(reason=SHUTDOWN_crash))
        k.hypercall(core, xen_mark(HYPERVISOR_sched_op), SCHEDOP_shutdown, handle)

    def _program_check(self, core: Core) -> None:
        self._panic(core, "program check")

    def _storage_fault(self, core: Core) -> None:
        self._panic(core, "storage fault")

    def _decrementer(self, core: Core) -> None:
        assert core.state is not None
        core.state.dec.write(0x7FFFFFFF, core.timebase())


class _CurrentMemory:
    """Guest memory through whichever VCPU is running a native of this kernel right now
    (the grant table client is shared by all of a kernel's natives)."""

    def __init__(self, os: GuestOS) -> None:
        self.os = os

    def _mem(self) -> KernelMemory:
        """One `KernelMemory` (and so one translation cache) per native call, renewed
        after every hypercall, since only hypercalls change the page tables."""
        os = self.os
        core = os.current_core
        if core is None:
            raise KernelError("guest memory touched outside a native routine")
        cached = os.current_memory_cache
        if cached is None or cached.core is not core:
            cached = os.current_memory_cache = KernelMemory(core)
        return cached

    def read(self, gpa: int, n: int) -> bytes:
        return self._mem().read(gpa, n)

    def write(self, gpa: int, data: bytes) -> None:
        self._mem().write(gpa, data)


def _int_list(value: WorkloadValue | None) -> list[int]:
    if value is None:
        return []
    if isinstance(value, int):
        return [value]
    return [int(x) for x in value]


def _workload_int(value: WorkloadValue, key: str) -> int:
    """A workload parameter that must be one integer (an int or its decimal text)."""
    if isinstance(value, list):
        raise TypeError(f"workload {key!r} = {value!r} is a list; it must be one integer")
    return int(value)
