"""The toolstack dom0 runs (xm create): builds guest domains with real domctl hypercalls.

It reaches Xen only through a `HypercallPort` (dom0's kernel), passing every argument
structure through xencomm descriptors in dom0's memory, as libxc does on PowerPC.  The
domain configurations play the part of xm config files on dom0's disk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from framework.errors import BuildError
from framework.guest.runtime import BUFFER_GPA
from framework.hw970.mmu import rma_log2
from framework.xen.public.arch_powerpc import KernelImage
from framework.xen.public.devtree import DomainDevtreeSpec, build_domain_devtree, domain_spec
from framework.xen.public.domctl import (
    DOMCTL,
    XEN_DOMCTL_INTERFACE_VERSION,
    XEN_SCHEDULER_CREDIT,
    XEN_DOMCTL_createdomain,
    XEN_DOMCTL_getvcpucontext,
    XEN_DOMCTL_max_mem,
    XEN_DOMCTL_max_vcpus,
    XEN_DOMCTL_real_mode_area,
    XEN_DOMCTL_SCHEDOP_putinfo,
    XEN_DOMCTL_scheduler_op,
    XEN_DOMCTL_setvcpuaffinity,
    XEN_DOMCTL_setvcpucontext,
    XEN_DOMCTL_unpausedomain,
    XEN_DOMCTL_xen970_copy_from_domain,
    XEN_DOMCTL_xen970_copy_to_domain,
    XEN_DOMCTL_xen970_getvcpustate,
    XEN_DOMCTL_xen970_setvcpustate,
)
from framework.xen.public.errno import EBUSY, EFAULT, EINVAL, ENOMEM, EPERM, ESRCH
from framework.xen.public.event_channel import EVTCHN_ALLOC_UNBOUND, EVTCHNOP_alloc_unbound
from framework.xen.public.memory import MEMORY_RESERVATION, XENMEM_populate_physmap
from framework.xen.public.vcpu import VCPU_GUEST_CONTEXT, XEN970_VCPU_STATE
from framework.xen.public.xen import (
    HYPERVISOR_domctl,
    HYPERVISOR_event_channel_op,
    HYPERVISOR_memory_op,
    xen_mark,
)
from framework.xen.public.xencomm import (
    XENCOMM_INLINE_FLAG,
    build_descriptor,
    descriptor_for_buffer,
)


class HypercallPort(Protocol):
    """What the toolstack needs from dom0's kernel."""

    def hypercall(self, r3: int, *args: int) -> int: ...
    def write(self, gpa: int, data: bytes) -> None: ...
    def read(self, gpa: int, n: int) -> bytes: ...
    def console(self, text: str) -> None: ...

    def view(self, gpa: int, n: int, write: bool) -> memoryview:
        """dom0's memory [gpa, gpa + n) seen without a copy (machine-contiguous kernel
        memory only; BuildError otherwise), as a process's read(2)/write(2) reach its
        buffer. The caller releases it."""
        ...


@dataclass(frozen=True)
class DomainConfig:
    """One guest to build (an xm config file)."""

    name: str
    memory: int
    vcpus: int
    rma: int
    weight: int = 256
    cap: int = 0
    affinity: tuple[int, ...] | None = None


class Toolstack:
    """xm-like domain builder running in dom0."""

    ARG = 0x40000  # dom0 gpa of the toolstack's argument page (descriptor at +0x1000)
    BUF = BUFFER_GPA  # dom0 gpa of its bulk buffer (images, devtrees), kept free by its kernel
    BUF_MAX = 0x400000

    def __init__(
        self, port: HypercallPort, kernel: KernelImage, clock_hz: int, timebase_hz: int
    ) -> None:
        self.port = port
        self.kernel = kernel
        self.clock_hz = clock_hz
        self.timebase_hz = timebase_hz
        self.domids: dict[str, int] = {}

    # -- plumbing ------------------------------------------------------------------------
    def _handle(self, gpa: int, nbytes: int, desc_gpa: int) -> int:
        self.port.write(desc_gpa, build_descriptor(descriptor_for_buffer(gpa, nbytes)))
        return desc_gpa

    def domctl(self, cmd: int, domid: int, **fields: int) -> tuple[int, dict[str, int]]:
        data = DOMCTL.pack(
            cmd=cmd, interface_version=XEN_DOMCTL_INTERFACE_VERSION, domain=domid, **fields
        )
        self.port.write(self.ARG, data)
        handle = self._handle(self.ARG, DOMCTL.size, self.ARG + 0x1000)
        rc = self.port.hypercall(xen_mark(HYPERVISOR_domctl), handle)
        return rc, DOMCTL.unpack(self.port.read(self.ARG, DOMCTL.size))

    def _buffer(self, data: bytes, offset: int = 0) -> int:
        """Put bytes in the bulk buffer; returns a xencomm handle describing them."""
        if offset + len(data) > self.BUF_MAX:
            raise BuildError(f"toolstack buffer too small for {len(data)} bytes")
        gpa = self.BUF + offset
        self.port.write(gpa, data)
        addrs = descriptor_for_buffer(gpa, len(data))
        desc_gpa = self.BUF + self.BUF_MAX + 0x1000 * (offset // 0x200000)
        self.port.write(desc_gpa, build_descriptor(addrs))
        return desc_gpa

    def _check(self, rc: int, what: str, name: str) -> None:
        if rc < 0:
            raise BuildError(f"{name}: {what} failed with -{_errname(-rc)}")

    # -- building ------------------------------------------------------------------------
    def create(self, cfg: DomainConfig) -> int:
        """Create and populate a domain (paused); returns its domid."""
        rc, out = self.domctl(XEN_DOMCTL_createdomain, 0)
        self._check(rc, "createdomain", cfg.name)
        domid = out["domain"]
        self.domids[cfg.name] = domid
        rc, _ = self.domctl(XEN_DOMCTL_max_vcpus, domid, max_vcpus=cfg.vcpus)
        self._check(rc, "max_vcpus", cfg.name)
        rc, _ = self.domctl(XEN_DOMCTL_real_mode_area, domid, rma_log=rma_log2(cfg.rma))
        self._check(rc, f"real_mode_area ({cfg.rma >> 20} MiB RMA)", cfg.name)
        rc, _ = self.domctl(XEN_DOMCTL_max_mem, domid, max_memkb=cfg.memory >> 10)
        self._check(rc, "max_mem", cfg.name)
        extents = (cfg.memory - cfg.rma) >> 24
        if extents:
            res = MEMORY_RESERVATION.pack(
                extent_start=0, nr_extents=extents, extent_order=12, domid=domid
            )
            self.port.write(self.ARG, res)
            handle = self._handle(self.ARG, len(res), self.ARG + 0x1000)
            rc = self.port.hypercall(
                xen_mark(HYPERVISOR_memory_op), XENMEM_populate_physmap, handle
            )
            if rc != extents:
                raise BuildError(f"{cfg.name}: populate_physmap gave {rc} of {extents} extents")
        for vid, cpu_set in enumerate([cfg.affinity] * cfg.vcpus if cfg.affinity else []):
            self._check(self.vcpu_pin(domid, vid, cpu_set), "setvcpuaffinity", cfg.name)
        self._check(self.sched_credit(domid, cfg.weight, cfg.cap), "scheduler_op", cfg.name)
        return domid

    def vcpu_pin(self, domid: int, vcpu: int, cpus: Sequence[int]) -> int:
        """`xm vcpu-pin`: XEN_DOMCTL_setvcpuaffinity with an 8-bit cpumap; Xen's rc."""
        bitmap = sum(1 << c for c in cpus).to_bytes(1, "little")
        handle = self._buffer(bitmap)
        rc, _ = self.domctl(
            XEN_DOMCTL_setvcpuaffinity, domid, vcpu=vcpu, cpumap_bitmap=handle, cpumap_nr_cpus=8
        )
        return rc

    def sched_credit(self, domid: int, weight: int, cap: int) -> int:
        """`xm sched-credit -w -c`: scheduler_op putinfo (weight 0 and cap 0xffff keep the
        current value, as Xen's csched_dom_cntl reads them); Xen's rc."""
        rc, _ = self.domctl(
            XEN_DOMCTL_scheduler_op,
            domid,
            sched_id=XEN_SCHEDULER_CREDIT,
            sched_cmd=XEN_DOMCTL_SCHEDOP_putinfo,
            sched_weight=weight,
            sched_cap=cap,
        )
        return rc

    def alloc_unbound(self, dom: int, remote: int) -> int:
        data = EVTCHN_ALLOC_UNBOUND.pack(dom=dom, remote_dom=remote)
        self.port.write(self.ARG, data)
        handle = self._handle(self.ARG, len(data), self.ARG + 0x1000)
        rc = self.port.hypercall(
            xen_mark(HYPERVISOR_event_channel_op), EVTCHNOP_alloc_unbound, handle
        )
        if rc < 0:
            raise BuildError(f"alloc_unbound for d{dom} failed with -{_errname(-rc)}")
        return EVTCHN_ALLOC_UNBOUND.unpack(self.port.read(self.ARG, 8))["port"]

    def guest_spec(
        self, domid: int, cfg: DomainConfig, workload: dict[str, int | str | list[int]]
    ) -> tuple[DomainDevtreeSpec, int, int]:
        """The devtree spec of guest `domid` with new console and xenstore channels (each
        an unbound port for dom0 to bind): (spec, console port, store port). A domain
        built and a domain restored get theirs the same way."""
        console_port = self.alloc_unbound(domid, 0)
        store_port = self.alloc_unbound(domid, 0)
        spec = domain_spec(
            domid=domid,
            rma=cfg.rma,
            memory=cfg.memory,
            vcpus=cfg.vcpus,
            console_evtchn=console_port,
            store_evtchn=store_port,
            privileged=False,
            clock_hz=self.clock_hz,
            timebase_hz=self.timebase_hz,
            workload=workload,
        )
        return spec, console_port, store_port

    def load_and_start(
        self, cfg: DomainConfig, workload: dict[str, int | str | list[int]]
    ) -> tuple[int, int]:
        """Write kernel and devtree into the domain, set VCPU contexts, unpause; returns
        the guest's (console, xenstore) ports for xenconsoled and xenstored to bind."""
        domid = self.domids[cfg.name]
        spec, console_port, store_port = self.guest_spec(domid, cfg, workload)
        DEVTREE_GPA = self.kernel.devtree_gpa
        self._copy(domid, self.kernel.load_gpa, self.kernel.image, cfg.name)
        self._copy(domid, DEVTREE_GPA, build_domain_devtree(spec), cfg.name)
        for vid in range(cfg.vcpus):
            regs = {
                "gpr3": DEVTREE_GPA,
                "gpr4": self.kernel.load_gpa,
                "pc": self.kernel.entry,
                "msr": 1 << 63,
            }
            handle = self._buffer(VCPU_GUEST_CONTEXT.pack(**regs))
            rc, _ = self.domctl(XEN_DOMCTL_setvcpucontext, domid, vcpu=vid, vcpu_ctxt=handle)
            self._check(rc, f"setvcpucontext({vid})", cfg.name)
        rc, _ = self.domctl(XEN_DOMCTL_unpausedomain, domid)
        self._check(rc, "unpausedomain", cfg.name)
        return console_port, store_port

    # -- save and restore (framework.dom0.save_restore) -----------------------------------
    def copy_from(self, domid: int, first_pfn: int, n: int) -> bytes:
        """Pages [first_pfn, first_pfn + n) of a domain, through dom0's BUF."""
        # BUF is physically contiguous kernel memory: an inline handle, as Linux's
        # xencomm_map_no_alloc makes for such buffers (a descriptor page holds 511 pages).
        handle = self.BUF | XENCOMM_INLINE_FLAG
        rc, _ = self.domctl(
            XEN_DOMCTL_xen970_copy_from_domain,
            domid,
            copy_first_pfn=first_pfn,
            copy_nr_pages=n,
            copy_dst=handle,
        )
        self._check(rc, f"copy from domain at pfn {first_pfn:#x}", f"d{domid}")
        return self.port.read(self.BUF, n << 12)

    def copy_from_view(self, domid: int, first_pfn: int, n: int) -> memoryview:
        """As `copy_from`, the pages seen where they are in BUF (the saver writes its file
        from there); the caller releases the view before the next copy."""
        handle = self.BUF | XENCOMM_INLINE_FLAG
        rc, _ = self.domctl(
            XEN_DOMCTL_xen970_copy_from_domain,
            domid,
            copy_first_pfn=first_pfn,
            copy_nr_pages=n,
            copy_dst=handle,
        )
        self._check(rc, f"copy from domain at pfn {first_pfn:#x}", f"d{domid}")
        return self.port.view(self.BUF, n << 12, False)

    def copy_to_filled(
        self, domid: int, gpa: int, nbytes: int, fill: Callable[[memoryview], None]
    ) -> None:
        """`fill` puts `nbytes` (at most BUF_MAX) into BUF - the restorer reads its file
        straight into it - and they are copied into the domain at `gpa`."""
        if nbytes > self.BUF_MAX:
            raise BuildError(f"toolstack buffer too small for {nbytes} bytes")
        with self.port.view(self.BUF, nbytes, True) as view:
            fill(view)
        rc, _ = self.domctl(
            XEN_DOMCTL_xen970_copy_to_domain,
            domid,
            copy_dst_gpa=gpa,
            copy_nbytes=nbytes,
            copy_src=self.BUF | XENCOMM_INLINE_FLAG,
        )
        self._check(rc, f"copy to domain at {gpa:#x}", f"d{domid}")

    def copy_to(self, domid: int, gpa: int, data: bytes) -> None:
        """Bytes (at most BUF_MAX) into a domain's memory at `gpa`, through dom0's BUF."""
        if len(data) > self.BUF_MAX:
            raise BuildError(f"toolstack buffer too small for {len(data)} bytes")
        self.port.write(self.BUF, data)
        rc, _ = self.domctl(
            XEN_DOMCTL_xen970_copy_to_domain,
            domid,
            copy_dst_gpa=gpa,
            copy_nbytes=len(data),
            copy_src=self.BUF | XENCOMM_INLINE_FLAG,
        )
        self._check(rc, f"copy to domain at {gpa:#x}", f"d{domid}")

    def vcpu_get(self, domid: int, vid: int, state: bool) -> bytes:
        """A VCPU's vcpu_guest_context, or (`state`) its xen970 model state."""
        layout = XEN970_VCPU_STATE if state else VCPU_GUEST_CONTEXT
        handle = self._buffer(bytes(layout.size))
        if state:
            rc, _ = self.domctl(XEN_DOMCTL_xen970_getvcpustate, domid, vcpu=vid, vcpu_state=handle)
        else:
            rc, _ = self.domctl(XEN_DOMCTL_getvcpucontext, domid, vcpu=vid, vcpu_ctxt=handle)
        self._check(rc, f"get VCPU {vid} {'state' if state else 'context'}", f"d{domid}")
        return self.port.read(self.BUF, layout.size)

    def vcpu_set(self, domid: int, vid: int, ctx: bytes, state: bytes) -> None:
        """Load a VCPU's context, then its model state."""
        handle = self._buffer(ctx)
        rc, _ = self.domctl(XEN_DOMCTL_setvcpucontext, domid, vcpu=vid, vcpu_ctxt=handle)
        self._check(rc, f"setvcpucontext({vid})", f"d{domid}")
        handle = self._buffer(state)
        rc, _ = self.domctl(XEN_DOMCTL_xen970_setvcpustate, domid, vcpu=vid, vcpu_state=handle)
        self._check(rc, f"setvcpustate({vid})", f"d{domid}")

    def _copy(self, domid: int, gpa: int, data: bytes, name: str) -> None:
        handle = self._buffer(data)
        rc, _ = self.domctl(
            XEN_DOMCTL_xen970_copy_to_domain,
            domid,
            copy_dst_gpa=gpa,
            copy_nbytes=len(data),
            copy_src=handle,
        )
        self._check(rc, f"copy to domain at {gpa:#x}", name)


def _errname(errno: int) -> str:
    names = {
        ENOMEM: "ENOMEM",
        EINVAL: "EINVAL",
        EPERM: "EPERM",
        ESRCH: "ESRCH",
        EFAULT: "EFAULT",
        EBUSY: "EBUSY",
    }
    return names.get(errno, str(errno))
