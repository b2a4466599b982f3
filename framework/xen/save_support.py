"""Xen's part of save and restore: the domctls dom0's saver and restorer use.

PowerPC Xen never had save/restore (`config/powerpc64.mk` never set CONFIG_MIGRATE); these
follow x86 Xen 3.1 where it has an equivalent, and docs/save-format.md says why each is
as it is:

- XEN_DOMCTL_getvcpucontext (13): the VCPU's `vcpu_guest_context` (the corrected 360-byte
  970 layout) from its saved registers. Refused (-EBUSY) while the VCPU is running: the
  saver asks only of a suspended (shut down) or paused domain, as x86's does.
- XEN_DOMCTL_xen970_getvcpustate / setvcpustate: what else Xen keeps per VCPU on the
  970 (SRR0/1, DAR, DSISR, SPRG0-3, DEC, DABR, the set_timer_op deadline, the FPRs and
  the SLB), as `XEN970_VCPU_STATE`; set only on a VCPU that has not run.
- XEN_DOMCTL_xen970_copy_from_domain: up to SAVE_BATCH_PAGES (1024) pages of the target,
  from a first pfn, into a dom0 buffer; it stands in for privcmd foreign mapping (the
  sibling of copy_to_domain) and charges what mapping each page would cost
  (`costs.PAGE_TABLE_OP` per page) plus the copy itself (`COPY_PER_KIB`).
- XEN_DOMCTL_resumedomain (27): a domain shut down for suspend runs again in place (the
  toolstack has set r3 = 1 in its context first: `xm save -c`, x86's xc_domain_resume
  with modify_returncode).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from framework.errors import NotOwned, XencommError
from framework.hw970.arch_state import (
    REG_CR,
    REG_CTR,
    REG_FPR0,
    REG_LR,
    REG_PC,
    REG_XER,
    context_registers,
)
from framework.hw970.core import Core
from framework.xen import costs
from framework.xen.domain import Domain, DomainState
from framework.xen.public.domctl import SAVE_BATCH_PAGES
from framework.xen.public.errno import EBUSY, EINVAL
from framework.xen.public.sched import SHUTDOWN_suspend
from framework.xen.public.vcpu import (
    VCPU_GUEST_CONTEXT,
    XEN970_SLB_MAX,
    XEN970_VCPU_STATE,
    Runstate,
)
from framework.xen.xencomm import Xencomm

if TYPE_CHECKING:
    from framework.xen.hypervisor import Hypervisor

__all__ = [
    "copy_from_domain",
    "get_vcpu_context",
    "get_vcpu_state",
    "resume_domain",
    "set_vcpu_state",
]


def get_vcpu_context(dom: Domain, vid: int) -> bytes | int:
    """The packed vcpu_guest_context of VCPU `vid`, or a negative errno."""
    if vid >= len(dom.vcpus):
        return -EINVAL
    v = dom.vcpus[vid]
    if v.runstate == Runstate.RUNNING:
        return -EBUSY
    regs = context_registers(v.arch)
    tr = v.arch.tr
    fields = {f"gpr{i}": regs.get(i, 0) for i in range(32)}
    fields.update(
        lr=regs.get(REG_LR, 0),
        ctr=regs.get(REG_CTR, 0),
        srr0=v.arch.srr0,
        srr1=v.arch.srr1,
        pc=regs.get(REG_PC, 0),
        msr=tr.msr,
        xer=regs.get(REG_XER, 0),
        hid4=tr.hid4,
        dar=v.arch.dar,
        dsisr=v.arch.dsisr & 0xFFFFFFFF,
        cr=regs.get(REG_CR, 0) & 0xFFFFFFFF,
        sdr1=tr.sdr1,
    )
    return VCPU_GUEST_CONTEXT.pack(**fields)


def get_vcpu_state(xen: Hypervisor, dom: Domain, vid: int) -> bytes | int:
    """The packed XEN970_VCPU_STATE of VCPU `vid`, or a negative errno."""
    if vid >= len(dom.vcpus):
        return -EINVAL
    v = dom.vcpus[vid]
    if v.runstate == Runstate.RUNNING:
        return -EBUSY
    st = v.arch
    regs = context_registers(st)
    slots = sorted(st.tr.slb_slots.items())[:XEN970_SLB_MAX]
    fields = {
        "srr0": st.srr0,
        "srr1": st.srr1,
        "dar": st.dar,
        "dsisr": st.dsisr,
        "dec": st.dec.read(_timebase(xen)),
        "dabr": v.dabr,
        "timer_deadline": v.timer_deadline or 0,
        "fpscr": 0,
        "slb_count": len(slots),
    }
    fields.update({f"sprg{i}": st.sprg[i] for i in range(4)})
    fields.update({f"fpr{i}": regs.get(REG_FPR0 + i, 0) for i in range(32)})
    for i, (index, esid) in enumerate(slots):
        fields[f"slb{i}_rs"] = st.tr.slb[esid]
        fields[f"slb{i}_rb"] = (esid << 28) | 0x8000000 | index
    return XEN970_VCPU_STATE.pack(**fields)


def set_vcpu_state(xen: Hypervisor, dom: Domain, vid: int, raw: bytes) -> int:
    """Load a VCPU's model state from a save file (a VCPU that has not run yet)."""
    if vid >= len(dom.vcpus):
        return -EINVAL
    v = dom.vcpus[vid]
    if v.runstate != Runstate.OFFLINE:
        return -EBUSY
    f = XEN970_VCPU_STATE.unpack(raw)
    if f["slb_count"] > XEN970_SLB_MAX:
        return -EINVAL
    st = v.arch
    st.srr0, st.srr1, st.dar, st.dsisr = f["srr0"], f["srr1"], f["dar"], f["dsisr"]
    st.sprg = [f[f"sprg{i}"] for i in range(4)]
    st.dec.write(f["dec"], _timebase(xen))
    v.dabr = f["dabr"]
    st.tr.slbia()
    for i in range(f["slb_count"]):
        st.tr.slbmte(f[f"slb{i}_rs"], f[f"slb{i}_rb"])
    if st.boot_regs is not None:
        st.boot_regs.update({REG_FPR0 + i: f[f"fpr{i}"] for i in range(32)})
    return 0


def copy_from_domain(
    xen: Hypervisor, core: Core, dom: Domain, comm: Xencomm, first_pfn: int, n: int, dst: int
) -> int:
    """Copy pages [first_pfn, first_pfn + n) of `dom` into dom0's buffer `dst`."""
    if dom.phys is None or not 0 < n <= SAVE_BATCH_PAGES:
        return -EINVAL
    # Machine runs of the range: the RMA and 16 MiB extents are contiguous, so a batch is
    # one or two runs, each read in one piece.
    pieces: list[bytes] = []
    try:
        pfn = first_pfn
        end = first_pfn + n
        mem = xen.memory
        while pfn < end:
            mfn = dom.phys.pfn_to_mfn(pfn)
            run = 1
            while pfn + run < end and dom.phys.pfn_to_mfn(pfn + run) == mfn + run:
                run += 1
            pieces.append(mem.read(mfn << 12, run << 12))
            pfn += run
    except NotOwned:
        return -EINVAL
    try:
        comm.copy_to_guest(dst, b"".join(pieces))
    except XencommError as comm_err:
        return -comm_err.errno
    core.charge(n * costs.PAGE_TABLE_OP + costs.COPY_PER_KIB * 4 * n)
    return 0


def resume_domain(xen: Hypervisor, dom: Domain) -> int:
    """A domain shut down for suspend runs again where it stopped."""
    if dom.state != DomainState.SHUTDOWN or dom.shutdown_reason != SHUTDOWN_suspend:
        return -EINVAL
    if any(v.runstate == Runstate.RUNNING for v in dom.vcpus):
        return -EBUSY
    dom.state = DomainState.PAUSED
    dom.shutdown_reason = None
    for v in dom.vcpus:
        v.going_down = False
    xen.unpause(dom)
    return 0


def _timebase(xen: Hypervisor) -> int:
    """The timebase now (the DEC counts against it)."""
    return xen.now() * xen.timebase_hz // 1_000_000_000
