"""XEN_DOMCTL_*: the privileged calls dom0's toolstack builds domains with.

As Xen 3.1 reads them: setvcpuaffinity copies at most NR_CPUS bits of the guest's map
(xenctl_cpumap_to_cpumask), however many `nr_cpus` claims; scheduler_op refuses a
scheduler other than credit or a command other than putinfo/getinfo (-EINVAL,
sched_adjust), and putinfo leaves the weight alone when given 0 and the cap when given
0xffff (csched_dom_cntl).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from framework.errors import AllocError, NotOwned, XencommError
from framework.hw970.arch_state import REG_CR, REG_CTR, REG_LR, REG_XER
from framework.hw970.core import Core
from framework.hw970.mmu import RMA_LOG2_TO_RMLR
from framework.trace.ids import K
from framework.xen import costs
from framework.xen.domain import Domain, DomainState, Vcpu
from framework.xen.dominfo import domain_info, vcpu_info
from framework.xen.public.domctl import (
    CAP_UNCHANGED,
    DOMCTL,
    XEN_DOMCTL_INTERFACE_VERSION,
    XEN_SCHEDULER_CREDIT,
    XEN_DOMCTL_createdomain,
    XEN_DOMCTL_destroydomain,
    XEN_DOMCTL_getdomaininfo,
    XEN_DOMCTL_getvcpuaffinity,
    XEN_DOMCTL_getvcpucontext,
    XEN_DOMCTL_getvcpuinfo,
    XEN_DOMCTL_max_mem,
    XEN_DOMCTL_max_vcpus,
    XEN_DOMCTL_pausedomain,
    XEN_DOMCTL_real_mode_area,
    XEN_DOMCTL_resumedomain,
    XEN_DOMCTL_SCHEDOP_getinfo,
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
from framework.xen.public.errno import EACCES, EAGAIN, EBUSY, EINVAL, ENOMEM, ENOSYS, EPERM, ESRCH
from framework.xen.public.sched import SHUTDOWN_poweroff
from framework.xen.public.vcpu import VCPU_GUEST_CONTEXT, XEN970_VCPU_STATE, Runstate
from framework.xen.public.xen import DOMID_FIRST_RESERVED, MAX_VIRT_CPUS
from framework.xen.save_support import (
    copy_from_domain,
    get_vcpu_context,
    get_vcpu_state,
    machine_runs,
    resume_domain,
    set_vcpu_state,
)
from framework.xen.xencomm import Xencomm, xencomm_of

if TYPE_CHECKING:
    from framework.xen.hypervisor import Hypervisor

#: What dom0 may still do to a dying domain: look at it, or kill it again (a no-op).
_DYING_OK = (
    XEN_DOMCTL_destroydomain,
    XEN_DOMCTL_getdomaininfo,
    XEN_DOMCTL_getvcpuinfo,
    XEN_DOMCTL_getvcpuaffinity,
)
#: CPUs Xen/PPC was built for (xen/include/asm-powerpc/config.h): the most bits of a
#: cpumap it reads.
NR_CPUS: Final = 16


def free_domid(xen: Hypervisor) -> int | None:
    """The next free domain id after Xen's rover, wrapping at DOMID_FIRST_RESERVED.

    Xen 3.1's XEN_DOMCTL_createdomain walks up from a static rover and wraps to 0 at
    DOMID_FIRST_RESERVED, so DOMID_SELF and the other reserved ids are never handed out and
    an id is reused only once the walk has come round; None when every id is taken.
    """
    rover = xen.domid_rover
    dom = (rover + 1) % DOMID_FIRST_RESERVED
    while dom != rover:
        if dom not in xen.domains:
            xen.domid_rover = dom
            return dom
        dom = (dom + 1) % DOMID_FIRST_RESERVED
    return None


def domctl(xen: Hypervisor, core: Core, v: Vcpu) -> int:
    if not v.domain.privileged:
        return -EPERM
    comm = xencomm_of(xen, v.domain)
    handle = core.gpr(4)
    try:
        raw = comm.copy_from_guest(handle, DOMCTL.size)
    except XencommError as comm_err:
        return -comm_err.errno
    op = DOMCTL.unpack(raw)
    core.charge(costs.DOMCTL_OP)
    if op["interface_version"] != XEN_DOMCTL_INTERFACE_VERSION:
        return -EACCES
    cmd = op["cmd"]
    if cmd == XEN_DOMCTL_createdomain:
        name = raw[20:36].rstrip(b"\0").decode("ascii", "replace") or "domU"
        want = op["domain"]
        if 0 < want < DOMID_FIRST_RESERVED:
            if want in xen.domains:
                return -EINVAL  # the caller asked for an id that is in use
            domid: int | None = want
        else:
            domid = free_domid(xen)
        if domid is None:
            return -ENOMEM  # every id below DOMID_FIRST_RESERVED is taken
        created = xen.create_domain(name, domid)
        xen.rec.emit(K.DOM_CREATE, core.now_ns(), core.cpu_id, created.domid, -1, 0, 0, 0, 0)
        out = bytearray(raw)
        out[8:10] = created.domid.to_bytes(2, "big")
        try:
            comm.copy_to_guest(handle, bytes(out))
        except XencommError as comm_err:
            return -comm_err.errno
        return 0
    dom = xen.domains.get(op["domain"])
    if dom is None:
        return -ESRCH
    if dom.state == DomainState.DYING and cmd not in _DYING_OK:
        return -EINVAL  # killed: it takes no more memory, VCPUs, contexts or parameters
    if cmd == XEN_DOMCTL_max_vcpus:
        n = op["max_vcpus"]
        if not 1 <= n <= MAX_VIRT_CPUS or n < len(dom.vcpus):
            return -EINVAL
        xen.set_max_vcpus(dom, n)
        return 0
    if cmd == XEN_DOMCTL_real_mode_area:
        log = op["rma_log"]
        if log not in RMA_LOG2_TO_RMLR or dom.phys is not None:
            return -EINVAL  # allocate_rma: an invalid order, or the domain has its RMA
        try:
            xen.allocate_rma(dom, 1 << log)
        except AllocError as alloc_err:
            xen.alloc_failure(dom, alloc_err)
            return -ENOMEM
        for vc in dom.vcpus:
            vc.arch.tr.set_hid4(dom.hid4)
        return 0
    if cmd == XEN_DOMCTL_max_mem:
        new_max = op["max_memkb"] >> 2  # KiB to 4 KiB pages, as max_memkb >> (PAGE_SHIFT-10)
        if dom.phys is not None and new_max < dom.phys.nr_pages:
            return -EINVAL  # below what the domain already holds (tot_pages)
        if dom.htab_bytes == 0 and dom.phys is not None:
            try:
                xen.allocate_htab(dom, new_max << 12)
            except AllocError as alloc_err:
                xen.alloc_failure(dom, alloc_err)
                return -ENOMEM
        dom.max_pages = new_max
        return 0
    if cmd == XEN_DOMCTL_setvcpuaffinity:
        vid, nr = op["vcpu"], op["cpumap_nr_cpus"]
        if vid >= len(dom.vcpus) or nr == 0:
            return -EINVAL
        try:
            bitmap = comm.copy_from_guest(op["cpumap_bitmap"], (min(nr, NR_CPUS) + 7) // 8)
        except XencommError as comm_err:
            return -comm_err.errno
        cpus = frozenset(c for c in range(min(nr, xen.ncpus)) if bitmap[c // 8] & (1 << (c % 8)))
        if not cpus:
            return -EINVAL
        dom.affinity[vid] = cpus
        cpumap = sum(1 << c for c in cpus)
        xen.rec.emit(K.SCHED_AFFINITY, core.now_ns(), core.cpu_id, dom.domid, vid, cpumap)
        xen.apply_kicks(xen.sched.set_affinity(dom.domid, vid, cpus), core.cpu_id)
        return 0
    if cmd == XEN_DOMCTL_scheduler_op:
        sched_cmd = op["sched_cmd"]
        if op["sched_id"] != XEN_SCHEDULER_CREDIT or sched_cmd not in (
            XEN_DOMCTL_SCHEDOP_putinfo,
            XEN_DOMCTL_SCHEDOP_getinfo,
        ):
            return -EINVAL
        if sched_cmd == XEN_DOMCTL_SCHEDOP_putinfo:
            weight, cap = op["sched_weight"], op["sched_cap"]
            weight = weight or dom.weight
            cap = dom.cap if cap == CAP_UNCHANGED else cap
            xen.sched.set_params(dom.domid, weight=weight, cap=cap)
            dom.weight, dom.cap = weight, cap
            return 0
        out = bytearray(raw)
        out[24:26] = dom.weight.to_bytes(2, "big")
        out[26:28] = dom.cap.to_bytes(2, "big")
        try:
            comm.copy_to_guest(handle, bytes(out))
        except XencommError as comm_err:
            return -comm_err.errno
        return 0
    if cmd == XEN_DOMCTL_setvcpucontext:
        vid = op["vcpu"]
        if vid >= len(dom.vcpus):
            return -EINVAL
        try:
            ctx = VCPU_GUEST_CONTEXT.unpack(
                comm.copy_from_guest(op["vcpu_ctxt"], VCPU_GUEST_CONTEXT.size)
            )
        except XencommError as comm_err:
            return -comm_err.errno
        target = dom.vcpus[vid]
        if target.runstate != Runstate.OFFLINE:
            return -EBUSY
        regs = {i: ctx[f"gpr{i}"] for i in range(32)}
        regs[-1] = ctx["pc"]
        # LR, CTR, XER and CR too (a restored context; zeros at a first boot).
        regs.update(
            {REG_LR: ctx["lr"], REG_CTR: ctx["ctr"], REG_XER: ctx["xer"], REG_CR: ctx["cr"]}
        )
        xen.set_vcpu_context(target, regs, ctx["msr"] & ~0x1000000000000000)
        return 0
    if cmd == XEN_DOMCTL_xen970_copy_to_domain:
        dst, n = op["copy_dst_gpa"], op["copy_nbytes"]
        if dom.phys is None:
            return -EINVAL  # no memory to copy into before real_mode_area
        try:
            runs = machine_runs(dom, dst, n)
            data = comm.view_of_guest(op["copy_src"], n)
        except XencommError as comm_err:
            return -comm_err.errno
        except NotOwned:
            return -EINVAL
        with memoryview(data) as src:
            for maddr, off, length in runs:
                xen.memory.fill(maddr, src[off : off + length])
        if isinstance(data, memoryview):
            data.release()
        core.charge(costs.COPY_PER_KIB * (n // 1024 + 1))
        return 0
    if cmd in _SAVE_OPS:
        return _save_op(xen, core, dom, comm, cmd, op)
    if cmd == XEN_DOMCTL_unpausedomain:
        if dom.phys is None or dom.htab_bytes == 0:
            return -EINVAL
        xen.unpause(dom)
        return 0
    if cmd == XEN_DOMCTL_pausedomain:
        if dom is v.domain:
            return -EINVAL
        xen.pause(dom)
        return 0
    if cmd == XEN_DOMCTL_destroydomain:
        if dom is v.domain:
            return -EINVAL
        if dom.state not in (DomainState.SHUTDOWN, DomainState.CREATED):
            xen.shutdown(dom, SHUTDOWN_poweroff)
        if any(x.runstate == Runstate.RUNNING for x in dom.vcpus):
            return -EAGAIN
        # domain_kill: frames another domain maps keep it dying until they are unmapped.
        xen.destroy(dom)
        return 0
    if cmd == XEN_DOMCTL_getvcpuinfo:
        vid = op["vcpu"]
        if vid >= len(dom.vcpus):
            return -ESRCH  # Xen 3.1: a VCPU the domain lacks
        out = bytearray(raw)
        for name, value in vcpu_info(dom.vcpus[vid], core.now_ns()).items():
            off, width = DOMCTL.fields["vcpuinfo_" + name]
            out[off : off + width] = value.to_bytes(width, "big")
        try:
            comm.copy_to_guest(handle, bytes(out))
        except XencommError as comm_err:
            return -comm_err.errno
        return 0
    if cmd == XEN_DOMCTL_getvcpuaffinity:
        vid, nr = op["vcpu"], op["cpumap_nr_cpus"]
        if vid >= len(dom.vcpus) or nr == 0:
            return -EINVAL
        allowed = dom.affinity.get(vid) or frozenset(range(xen.ncpus))
        nbytes = (min(nr, NR_CPUS) + 7) // 8
        bitmap = sum(1 << c for c in allowed if c < nr).to_bytes(nbytes, "little")
        try:
            comm.copy_to_guest(op["cpumap_bitmap"], bitmap)
        except XencommError as comm_err:
            return -comm_err.errno
        return 0
    if cmd == XEN_DOMCTL_getdomaininfo:
        out = bytearray(raw)
        for name, value in domain_info(dom, core.now_ns()).items():
            off, width = DOMCTL.fields["info_" + name]
            out[off : off + width] = value.to_bytes(width, "big")
        try:
            comm.copy_to_guest(handle, bytes(out))
        except XencommError as comm_err:
            return -comm_err.errno
        return 0
    return -ENOSYS


#: Save and restore (`save_support`).
_SAVE_OPS: Final = (
    XEN_DOMCTL_getvcpucontext,
    XEN_DOMCTL_resumedomain,
    XEN_DOMCTL_xen970_copy_from_domain,
    XEN_DOMCTL_xen970_getvcpustate,
    XEN_DOMCTL_xen970_setvcpustate,
)


def _save_op(
    xen: Hypervisor, core: Core, dom: Domain, comm: Xencomm, cmd: int, op: dict[str, int]
) -> int:
    """The domctls of save and restore, each checked in `save_support`."""
    if cmd == XEN_DOMCTL_resumedomain:
        return resume_domain(xen, dom)
    if cmd == XEN_DOMCTL_xen970_copy_from_domain:
        return copy_from_domain(
            xen, core, dom, comm, op["copy_first_pfn"], op["copy_nr_pages"], op["copy_dst"]
        )
    try:
        if cmd == XEN_DOMCTL_xen970_setvcpustate:
            raw = comm.copy_from_guest(op["vcpu_state"], XEN970_VCPU_STATE.size)
            return set_vcpu_state(xen, dom, op["vcpu"], raw)
        if cmd == XEN_DOMCTL_getvcpucontext:
            out = get_vcpu_context(dom, op["vcpu"])
            handle = op["vcpu_ctxt"]
        else:
            out = get_vcpu_state(xen, dom, op["vcpu"])
            handle = op["vcpu_state"]
        if isinstance(out, int):
            return out
        comm.copy_to_guest(handle, out)
    except XencommError as comm_err:
        return -comm_err.errno
    return 0
