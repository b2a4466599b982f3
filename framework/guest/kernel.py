"""The guest kernel's native routines: start-up, per-port event dispatch, fault handling,
and the workloads (compute, timer, pingpong).

Natives run when a core reaches their stub address.  They act only through the core's
registers, guest memory (reached through the VCPU's own RMA/page-table translation) and
real hypercalls made with the same entry as `sc 1`; they charge simulated time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from framework.errors import KernelError
from framework.guest.runtime import AREA_BASE, AREA_EVTMASK, AREA_EVTMASK_BYTES, AREA_SIZE
from framework.hw970.core import Core
from framework.hw970.mmu import (
    LARGE_PAGE_SHIFT,
    PTE_V,
    SLB_ENTRIES,
    TranslationState,
    pte_avpn,
    pteg_index,
)
from framework.hw970.regs import MSR_DR, MSR_EE, MSR_IR, MSR_ME, MSR_RI, MSR_SF
from framework.trace.ids import K
from framework.xen.public.arch_powerpc import NR_GRANT_FRAMES
from framework.xen.public.devtree import (
    DomainDevtreeSpec,
)
from framework.xen.public.event_channel import (
    EVTCHN_ALLOC_UNBOUND,
    EVTCHN_BIND_INTERDOMAIN,
    EVTCHN_BIND_VCPU,
    EVTCHN_BIND_VIRQ,
    EVTCHN_PORT,
    EVTCHNOP_alloc_unbound,
    EVTCHNOP_bind_interdomain,
    EVTCHNOP_bind_vcpu,
    EVTCHNOP_bind_virq,
    EVTCHNOP_close,
    EVTCHNOP_send,
    EVTCHNOP_unmask,
)
from framework.xen.public.grant_table import (
    GNTTAB_COPY,
    GNTTAB_MAP_GRANT_REF,
    GNTTAB_SETUP_TABLE,
    GNTTAB_UNMAP_GRANT_REF,
    GNTMAP_host_map,
    GNTMAP_readonly,
    GNTTABOP_copy,
    GNTTABOP_map_grant_ref,
    GNTTABOP_setup_table,
    GNTTABOP_unmap_grant_ref,
    gntst_name,
)
from framework.xen.public.layout import Layout, signed16
from framework.xen.public.papr import H_AVPN, H_ENTER, H_REMOVE, H_SUCCESS
from framework.xen.public.xen import (
    DOMID_SELF,
    EVTCHN_MASK_OFF,
    VIRQ_TIMER,
    CONSOLEIO_write,
    HYPERVISOR_console_io,
    HYPERVISOR_event_channel_op,
    HYPERVISOR_grant_table_op,
    HYPERVISOR_set_timer_op,
    xen_mark,
)
from framework.xen.public.xencomm import (
    XENCOMM_INLINE_FLAG,
    build_descriptor,
    descriptor_for_buffer,
)

from .byte_ring import ConsoleRing
from .driver_kernel import KernelHost
from .grants import GrantTableClient
from .kmem import KernelMemory
from .pages import PagePool
from .runtime import (
    KERNEL_BASE,
    SCRATCH_BASE,
    SCRATCH_SIZE,
)
from .xenbus import Xenbus

if TYPE_CHECKING:
    from .blkback import BlkBack
    from .control import ShutdownControl
    from .cpu_hotplug import CpuHotplug
    from .frontends import FrontendBus
    from .netback import NetBack
    from .pingpong import Pingpong

KERNEL_MSR: Final = MSR_SF | MSR_ME | MSR_EE | MSR_IR | MSR_DR | MSR_RI
LARGE: Final = 1 << LARGE_PAGE_SHIFT  # the linear map's 16 MiB pages
PTE_PP_RW: Final = 0x2
PTE_PP_RO: Final = 0x3
#: The kernel's page pool: above the toolstack buffers, below the special pages.
POOL_START: Final = 0x800000
POOL_TOP_RESERVE: Final = 16 * 4096


_GNT_BATCH: Final = 64  # grant ops per hypercall (64 x 40 bytes fit the argument page)


PTE_M: Final = 0x10


def kernel_vsid(esid: int) -> int:
    """The VSID the kernel gives a linear-map segment (Linux derives it from the ESID)."""
    return (esid & 0xFFFFFFF) | (0x5A5 << 28)


@dataclass
class Timer:
    deadline: int
    callback: Callable[[Core, int], None]
    #: What the timer is, for a suspend record ("timer.<i>", "console.<i>"; "" = none).
    tag: str = ""


@dataclass
class GuestKernel:
    """Per-domain kernel state (what a real kernel keeps in its own data)."""

    os: KernelHost
    spec: DomainDevtreeSpec
    port_handlers: dict[int, Callable[[Core, int], None]] = field(default_factory=dict)
    timers: dict[int, list[Timer]] = field(default_factory=dict)
    #: Its side of a pingpong pair, if it is in one.
    pingpong: Pingpong | None = None
    _in_timer: set[int] = field(default_factory=set)
    #: gpa page -> (PTE index, PTE high word) of the kernel's 4 KiB I/O mappings.
    io_ptes: dict[int, tuple[int, int]] = field(default_factory=dict)
    #: ESIDs of the 4 KiB I/O segments (grant frames, foreign area), in install order.
    io_segments: list[int] = field(default_factory=list)
    pool: PagePool | None = None
    grants: GrantTableClient | None = None
    xenbus: Xenbus | None = None
    console_pending: bytearray = field(default_factory=bytearray)
    #: Everything typed on the console (`xm console` input), in order.
    console_typed: bytearray = field(default_factory=bytearray)
    #: dom0: the backends (when the machine has I/O devices); a domU: its frontends.
    blkback: BlkBack | None = None
    netback: NetBack | None = None
    frontends: FrontendBus | None = None
    #: A domU: its watch on control/shutdown (xm shutdown, reboot).
    control: ShutdownControl | None = None
    #: VCPU hotplug (`xm vcpu-set`), in a kernel with more than one VCPU.
    cpu_hotplug: CpuHotplug | None = None
    #: VCPU -> its VIRQ_TIMER port.
    timer_ports: dict[int, int] = field(default_factory=dict)
    #: Where the kernel found its devtree (the start-info frame a suspend passes Xen).
    devtree_gpa: int = 0

    @property
    def domid(self) -> int:
        return self.spec.domid

    # -- hypercalls ----------------------------------------------------------------------
    def hypercall(self, core: Core, r3: int, *args: int) -> int:
        """Make a hypercall through Xen's `sc 1` entry (clobbers r3.., as a call may)."""
        pc = core.pc
        self.os.current_memory_cache = None  # the call may change the page tables
        while True:
            core.set_gpr(3, r3)
            for i, a in enumerate(args):
                core.set_gpr(4 + i, a)
            core.on_hypercall(core)
            if core.pc == pc:
                break
            core.pc = pc  # continuation: Xen asked for the same call again
            args = tuple(core.gpr(4 + i) for i in range(len(args)))
        ret = core.gpr(3)
        return ret - (1 << 64) if ret >> 63 else ret

    def scratch(self, core: Core) -> int:
        assert core.state is not None
        return SCRATCH_BASE + SCRATCH_SIZE * core.state.pir

    def xencomm_arg(self, core: Core, data: bytes) -> int:
        """Put an argument structure in this VCPU's scratch page; returns its handle.

        The scratch page is physically contiguous kernel memory, so the handle is an
        inline one (bit 63 + guest-physical address), as Linux's xencomm_map_no_alloc
        makes for such buffers; descriptors are for scattered (user) buffers.
        """
        base = self.scratch(core)
        KernelMemory(core).write(base, data)
        return base | XENCOMM_INLINE_FLAG

    def read_arg(self, core: Core, n: int) -> bytes:
        return KernelMemory(core).read(self.scratch(core), n)

    def multi_op(
        self, core: Core, nr: int, cmd: int, layout: Layout, items: list[dict[str, int]]
    ) -> tuple[int, list[dict[str, int]]]:
        """An array-of-structures hypercall (grant ops): (nr)(cmd, handle, count)."""
        if not items:
            return 0, []
        size = layout.size
        if size * len(items) > 0x1000:
            raise ValueError(f"{len(items)} x {layout.name} exceed the 4 KiB argument page")
        data = b"".join(layout.pack(**it) for it in items)
        handle = self.xencomm_arg(core, data)
        rc = self.hypercall(core, xen_mark(nr), cmd, handle, len(items))
        raw = self.read_arg(core, size * len(items))
        return rc, [layout.unpack(raw[i * size : (i + 1) * size]) for i in range(len(items))]

    # -- event channels ------------------------------------------------------------------
    def evtchn_alloc_unbound(self, core: Core, remote_dom: int) -> int:
        rc, out = self.op(
            core,
            HYPERVISOR_event_channel_op,
            EVTCHNOP_alloc_unbound,
            EVTCHN_ALLOC_UNBOUND,
            dom=DOMID_SELF,
            remote_dom=remote_dom,
        )
        if rc < 0:
            raise KernelError(f"d{self.domid}: alloc_unbound for d{remote_dom} failed ({rc})")
        return out["port"]

    def evtchn_bind_interdomain(self, core: Core, remote_dom: int, remote_port: int) -> int:
        rc, out = self.op(
            core,
            HYPERVISOR_event_channel_op,
            EVTCHNOP_bind_interdomain,
            EVTCHN_BIND_INTERDOMAIN,
            remote_dom=remote_dom,
            remote_port=remote_port,
        )
        if rc < 0:
            raise KernelError(
                f"d{self.domid}: bind_interdomain to d{remote_dom} port {remote_port} failed ({rc})"
            )
        return out["local_port"]

    def evtchn_bind_vcpu(self, core: Core, port: int, vcpu: int) -> int:
        """EVTCHNOP_bind_vcpu: `port`'s upcalls go to VCPU `vcpu`; returns Xen's code.

        As Linux's rebind_irq_to_cpu: the port is masked while it moves, and unmasked with
        EVTCHNOP_unmask after, so an event that arrived meanwhile is delivered to the new
        VCPU instead of waiting in a word the old VCPU no longer serves."""
        was_masked = self._set_evtchn_mask(core, port)
        rc, _ = self.op(
            core,
            HYPERVISOR_event_channel_op,
            EVTCHNOP_bind_vcpu,
            EVTCHN_BIND_VCPU,
            port=port,
            vcpu=vcpu,
        )
        if rc == 0:
            self.bind_port_to_vcpu(core, port, vcpu)
        if not was_masked:
            self.op(core, HYPERVISOR_event_channel_op, EVTCHNOP_unmask, EVTCHN_PORT, port=port)
        return rc

    def _set_evtchn_mask(self, core: Core, port: int) -> bool:
        """Set `port`'s mask bit in shared_info; returns whether it was set already."""
        mem = self.memory(core)
        addr = self.spec.shared_info_gpa + EVTCHN_MASK_OFF + (port >> 6) * 8
        word = int.from_bytes(mem.read(addr, 8), "big")
        bit = 1 << (port & 63)
        if not word & bit:
            mem.write(addr, (word | bit).to_bytes(8, "big"))
        return bool(word & bit)

    def evtchn_close(self, core: Core, port: int) -> None:
        self.port_handlers.pop(port, None)
        self.op(core, HYPERVISOR_event_channel_op, EVTCHNOP_close, EVTCHN_PORT, port=port)
        self.bind_port_to_vcpu(core, port, 0)

    # -- which VCPU handles which port -----------------------------------------------------
    def init_binding_masks(self, core: Core) -> None:
        """Every port starts on VCPU 0 (Linux's init_evtchn_cpu_bindings): VCPU 0's binding
        mask all ones, the others' all zeros, in each VCPU's kernel area."""
        mem = self.memory(core)
        for vid in range(self.spec.nr_vcpus):
            fill = b"\xff" if vid == 0 else b"\x00"
            mem.write(AREA_BASE + AREA_SIZE * vid + AREA_EVTMASK, fill * AREA_EVTMASK_BYTES)

    def bind_port_to_vcpu(self, core: Core, port: int, vcpu: int) -> None:
        """Move `port` to `vcpu`'s binding mask (Linux's bind_evtchn_to_cpu): the upcall of
        no other VCPU takes it any more."""
        mem = self.memory(core)
        word_off = AREA_EVTMASK + (port >> 6) * 8
        bit = 1 << (port & 63)
        for vid in range(self.spec.nr_vcpus):
            addr = AREA_BASE + AREA_SIZE * vid + word_off
            word = int.from_bytes(mem.read(addr, 8), "big")
            new = word | bit if vid == vcpu else word & ~bit
            if new != word:
                mem.write(addr, new.to_bytes(8, "big"))

    # -- 4 KiB I/O mappings ----------------------------------------------------------------
    def memory(self, core: Core) -> KernelMemory:
        """This kernel's view of its memory, for the native call `core` is running (a
        `KernelMemory` follows the page tables as they were when it was made)."""
        return KernelMemory(core)

    def map_4k(self, core: Core, gpa: int, readonly: bool = False) -> int:
        """H_ENTER a 4 KiB kernel mapping of `gpa` (grant frame or foreign slot) at
        KERNEL_BASE + gpa; returns the PTE index (for `unmap_4k`)."""
        self.ensure_io_segment(core, gpa)
        ea = KERNEL_BASE | gpa
        vsid = kernel_vsid(ea >> 28)
        n_ptegs = 1 << (self.spec.htab_log2 - 7)
        ptex = pteg_index(vsid, ea, 12, False, n_ptegs) * 8
        hi = (pte_avpn(vsid, ea) << 7) | PTE_V
        lo = (gpa & ~0xFFF) | PTE_M | (PTE_PP_RO if readonly else PTE_PP_RW)
        rc = self.hypercall(core, H_ENTER, 0, ptex, hi, lo)
        if rc != H_SUCCESS:
            raise KernelError(f"d{self.domid}: H_ENTER of 4 KiB page {gpa:#x} failed ({rc})")
        slot = core.gpr(4)
        self.io_ptes[gpa & ~0xFFF] = (slot, hi)
        return slot

    def unmap_4k(self, core: Core, gpa: int) -> None:
        """H_REMOVE the kernel's 4 KiB mapping of `gpa` (AVPN-checked)."""
        slot, hi = self.io_ptes.pop(gpa & ~0xFFF)
        rc = self.hypercall(core, H_REMOVE, H_AVPN, slot, hi & ~0x7F)
        if rc != H_SUCCESS:
            raise KernelError(f"d{self.domid}: H_REMOVE of 4 KiB page {gpa:#x} failed ({rc})")

    def ensure_io_segment(self, core: Core, gpa: int) -> None:
        """The segment holding `gpa` must be one of the kernel's 4 KiB I/O segments, which
        every VCPU installs at start-up (`add_io_segment` before the others come up)."""
        esid = (KERNEL_BASE | gpa) >> 28
        if esid not in self.io_segments:
            raise KernelError(f"d{self.domid}: gpa {gpa:#x} is outside the I/O segments")

    def add_io_segment(self, core: Core, gpa: int) -> None:
        """Declare (and install on this VCPU) the 4 KiB segment holding `gpa`."""
        esid = (KERNEL_BASE | gpa) >> 28
        if esid in self.io_segments:
            return
        self.io_segments.append(esid)
        assert core.state is not None
        install_io_segment(core.state.tr, esid, len(self.io_segments))
        core.flush_tlb()

    # -- trace -------------------------------------------------------------------------------
    def emit(
        self,
        core: Core,
        kind: int,
        f0: int = 0,
        f1: int = 0,
        f2: int = 0,
        f3: int = 0,
        *,
        text: str | None = None,
    ) -> None:
        """One trace record from this VCPU: up to four fields (a record's width) and text."""
        assert core.state is not None
        self.os.rec.emit(
            kind, core.now_ns(), core.cpu_id, self.domid, core.state.pir, f0, f1, f2, f3, text
        )

    def op(
        self, core: Core, nr: int, cmd: int, layout: Layout, **fields: int
    ) -> tuple[int, dict[str, int]]:
        """cmd-style hypercall with one structure argument; returns (rc, structure out)."""
        handle = self.xencomm_arg(core, layout.pack(**fields))
        rc = self.hypercall(core, xen_mark(nr), cmd, handle)
        return rc, layout.unpack(self.read_arg(core, layout.size))

    def console(self, core: Core, text: str) -> None:
        """A console line: dom0 through console_io, a domU through its console ring."""
        data = (text + "\n").encode()
        if not self.spec.privileged and self.spec.console_evtchn:
            self.console_pending += data
            self.flush_console(core)
            return
        handle = self.xencomm_arg(core, data)
        self.hypercall(core, xen_mark(HYPERVISOR_console_io), CONSOLEIO_write, len(data), handle)

    def on_console_event(self, core: Core, _port: int = 0) -> None:
        """The console port: take what was typed (echoing it, as a tty does), then move
        pending output into the ring."""
        typed = ConsoleRing(KernelMemory(core), self.spec.console_gpa).read_in()
        if typed:
            self.console_typed += typed
            self.emit(core, K.GUEST_MARK, len(typed), text="console.input")
            self.console_pending += typed
            self.send(core, self.spec.console_evtchn)  # room in the input ring again
        self.flush_console(core)

    def flush_console(self, core: Core, _port: int = 0) -> None:
        """Move pending console bytes into the ring (xenconsoled notifies when it drained)."""
        if not self.console_pending:
            return
        n = ConsoleRing(KernelMemory(core), self.spec.console_gpa).write_out(
            bytes(self.console_pending)
        )
        if n:
            del self.console_pending[:n]
            self.send(core, self.spec.console_evtchn)

    # -- grant tables ------------------------------------------------------------------------
    def setup_grant_table(self, core: Core) -> None:
        """GNTTABOP_setup_table, then 4 KiB mappings of the frames for `grants`."""
        base = self.scratch(core)
        mem = KernelMemory(core)
        nr = NR_GRANT_FRAMES
        mem.write(base + 0x800, bytes(8 * nr))
        mem.write(base + 0x1800, build_descriptor(descriptor_for_buffer(base + 0x800, 8 * nr)))
        rc, outs = self.multi_op(
            core,
            HYPERVISOR_grant_table_op,
            GNTTABOP_setup_table,
            GNTTAB_SETUP_TABLE,
            [{"dom": DOMID_SELF, "nr_frames": nr, "frame_list": base + 0x1800}],
        )
        out = outs[0]
        if rc < 0 or signed16(out["status"]):
            raise KernelError(f"d{self.domid}: grant setup_table failed ({rc}, {out['status']})")
        raw = KernelMemory(core).read(base + 0x800, 8 * nr)
        pfns = [int.from_bytes(raw[8 * i : 8 * i + 8], "big") for i in range(nr)]
        for pfn in pfns:
            self.add_io_segment(core, pfn << 12)
            self.map_4k(core, pfn << 12)
        self.grants = GrantTableClient(self.os.current_memory, pfns[0] << 12)

    def grant_map_many(
        self, core: Core, items: list[tuple[int, int, bool]]
    ) -> list[tuple[int, int] | int]:
        """Map (domid, ref, readonly) grants into the foreign area: (gpa, handle) or the
        negative GNTST status, per item, in one hypercall."""
        out: list[tuple[int, int] | int] = []
        for i in range(0, len(items), _GNT_BATCH):
            ops = [
                {
                    "flags": GNTMAP_host_map | (GNTMAP_readonly if ro else 0),
                    "ref": ref,
                    "dom": domid,
                }
                for domid, ref, ro in items[i : i + _GNT_BATCH]
            ]
            rc, res = self.multi_op(
                core, HYPERVISOR_grant_table_op, GNTTABOP_map_grant_ref,
                GNTTAB_MAP_GRANT_REF, ops,
            )  # fmt: skip
            if rc < 0:
                raise KernelError(f"d{self.domid}: map_grant_ref hypercall failed ({rc})")
            for r in res:
                st = signed16(r["status"])
                out.append((r["host_addr"], r["handle"]) if st == 0 else st)
        return out

    def grant_map(self, core: Core, domid: int, ref: int, readonly: bool) -> tuple[int, int]:
        res = self.grant_map_many(core, [(domid, ref, readonly)])[0]
        if isinstance(res, int):
            raise KernelError(
                f"d{self.domid}: map of d{domid} grant {ref} failed: {gntst_name(res)}"
            )
        return res

    def grant_unmap_many(self, core: Core, maps: list[tuple[int, int]]) -> list[int]:
        """Unmap (gpa, handle) pairs; the GNTST status of each."""
        out: list[int] = []
        for i in range(0, len(maps), _GNT_BATCH):
            ops = [{"host_addr": gpa, "handle": h} for gpa, h in maps[i : i + _GNT_BATCH]]
            rc, res = self.multi_op(
                core, HYPERVISOR_grant_table_op, GNTTABOP_unmap_grant_ref,
                GNTTAB_UNMAP_GRANT_REF, ops,
            )  # fmt: skip
            if rc < 0:
                raise KernelError(f"d{self.domid}: unmap_grant_ref hypercall failed ({rc})")
            out += [signed16(r["status"]) for r in res]
        return out

    def grant_unmap(self, core: Core, gpa: int, handle: int) -> None:
        st = self.grant_unmap_many(core, [(gpa, handle)])[0]
        if st:
            raise KernelError(f"d{self.domid}: unmap of {gpa:#x} failed: {gntst_name(st)}")

    def grant_copy(self, core: Core, ops: list[dict[str, int]]) -> list[int]:
        """GNTTABOP_copy in batches; the GNTST status of each op."""
        out: list[int] = []
        for i in range(0, len(ops), _GNT_BATCH):
            rc, res = self.multi_op(
                core, HYPERVISOR_grant_table_op, GNTTABOP_copy, GNTTAB_COPY,
                ops[i : i + _GNT_BATCH],
            )  # fmt: skip
            if rc < 0:
                raise KernelError(f"d{self.domid}: grant copy hypercall failed ({rc})")
            out += [signed16(r["status"]) for r in res]
        return out

    def send(self, core: Core, port: int) -> int:
        """EVTCHNOP_send (nothing comes back in the argument, so nothing is read back)."""
        handle = self.xencomm_arg(core, port.to_bytes(4, "big"))
        return self.hypercall(core, xen_mark(HYPERVISOR_event_channel_op), EVTCHNOP_send, handle)

    # -- timers ----------------------------------------------------------------------------
    def bind_timer(self, core: Core) -> None:
        """Bind VIRQ_TIMER on this VCPU (once): set_timer_op deadlines arrive through it."""
        assert core.state is not None
        vid = core.state.pir
        if vid in self.timer_ports:
            return
        rc, out = self.op(
            core,
            HYPERVISOR_event_channel_op,
            EVTCHNOP_bind_virq,
            EVTCHN_BIND_VIRQ,
            virq=VIRQ_TIMER,
            vcpu=vid,
        )
        if rc != 0:
            raise KernelError(f"d{self.domid}: binding VIRQ_TIMER on VCPU {vid} failed ({rc})")
        self.timer_ports[vid] = out["port"]
        self.bind_port_to_vcpu(core, out["port"], vid)
        self.port_handlers[out["port"]] = self.on_timer

    def add_timer(
        self, core: Core, deadline: int, callback: Callable[[Core, int], None], tag: str = ""
    ) -> None:
        """Run `callback(core, deadline)` on this VCPU at simulated time `deadline` (`tag`
        names a workload's timer in a suspend record)."""
        assert core.state is not None
        vid = core.state.pir
        self.bind_timer(core)
        lst = self.timers.setdefault(vid, [])
        lst.append(Timer(deadline, callback, tag))
        if vid not in self._in_timer:
            self._arm(core, vid)  # inside on_timer the queue is re-armed once at the end

    def rearm_timers(self, core: Core) -> None:
        """Set this VCPU's next deadline with Xen again (after a cancelled suspend)."""
        assert core.state is not None
        self._arm(core, core.state.pir)

    def _arm(self, core: Core, vid: int) -> None:
        lst = self.timers.get(vid)
        if lst:
            nxt = min(t.deadline for t in lst)
            self.hypercall(core, xen_mark(HYPERVISOR_set_timer_op), nxt)

    def on_timer(self, core: Core, _port: int) -> None:
        assert core.state is not None
        vid = core.state.pir
        now = core.now_ns()
        due = [t for t in self.timers.get(vid, []) if t.deadline <= now]
        self.timers[vid] = [t for t in self.timers.get(vid, []) if t.deadline > now]
        self._in_timer.add(vid)
        try:
            for t in sorted(due, key=lambda t: t.deadline):
                t.callback(core, t.deadline)
        finally:
            self._in_timer.discard(vid)
        self._arm(core, vid)


def install_io_segment(tr: TranslationState, esid: int, index: int) -> None:
    """One 4 KiB-page kernel segment in SLB slot 63 - index (the linear map uses 0 up)."""
    rb = (esid << 28) | 0x8000000 | (SLB_ENTRIES - index)
    tr.slbmte(kernel_vsid(esid) << 12, rb)
