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
    "machine_runs",
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


def machine_runs(dom: Domain, gpa: int, n: int) -> list[tuple[int, int, int]]:
    """The machine pieces of `dom`'s [gpa, gpa + n): (machine address, offset in the
    range, length). The RMA and each 16 MiB extent are contiguous, so a page batch is one
    or two pieces; `NotOwned` if a page is not the domain's."""
    phys = dom.phys
    assert phys is not None
    if n <= 0:
        return []
    first, last = gpa >> 12, (gpa + n - 1) >> 12
    if phys.contiguous(first, last - first + 1):
        return [((phys.pfn_to_mfn(first) << 12) | (gpa & 0xFFF), 0, n)]
    runs: list[tuple[int, int, int]] = []
    off = 0
    while off < n:
        chunk = min(4096 - ((gpa + off) & 0xFFF), n - off)
        maddr = (phys.pfn_to_mfn((gpa + off) >> 12) << 12) | ((gpa + off) & 0xFFF)
        if runs and runs[-1][0] + runs[-1][2] == maddr:
            runs[-1] = (runs[-1][0], runs[-1][1], runs[-1][2] + chunk)
        else:
            runs.append((maddr, off, chunk))
        off += chunk
    return runs


def copy_from_domain(
    xen: Hypervisor, core: Core, dom: Domain, comm: Xencomm, first_pfn: int, n: int, dst: int
) -> int:
    """Copy pages [first_pfn, first_pfn + n) of `dom` into dom0's buffer `dst`: each
    machine run of the pages straight into the buffer (no copy between), charged per page
    as mapping each would cost, plus the copy."""
    if dom.phys is None or not 0 < n <= SAVE_BATCH_PAGES:
        return -EINVAL
    try:
        runs = machine_runs(dom, first_pfn << 12, n << 12)
        comm.chunks(dst, n << 12)  # EFAULT before anything is copied
    except NotOwned:
        return -EINVAL
    except XencommError as comm_err:
        return -comm_err.errno
    mem = xen.memory
    for maddr, off, length in runs:
        with mem.view(maddr, length) as piece:
            comm.copy_to_guest(dst, piece, off)
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
