"""PAPR hcalls for the hashed page table: H_ENTER, H_REMOVE, H_READ, H_PROTECT,
H_CLEAR_REF, H_CLEAR_MOD.

Translation is always on: the guest names PFNs in its PTEs and Xen turns them into MFNs
(the "VFN->PFN half is the guest's, PFN->MFN is Xen's") with the port's four pfn classes
(`p2m.pfn_to_mfn`).  A PFN the domain does not own is refused, so an unprivileged guest
can never map another domain's frames except through a grant: dom0's foreign area slots
(4 KiB only, read-only slots forced to PP=3, each PTE counted so the slot cannot be
unmapped under it) and its own grant frames (4 KiB only, WIMG forced to I=0 G=0).  The
privileged domain may also name another domain's machine frame directly (the port's
"MFN mappings are for dom0", how its tools built domains); 4 KiB pages only, and without
the reference the port took, so the mapping does not keep the frame from being freed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from framework.errors import NotOwned
from framework.hw970.core import Core
from framework.hw970.memory import PAGE_SHIFT
from framework.hw970.mmu import (
    LARGE_PAGE_SHIFT,
    PTE_C,
    PTE_G,
    PTE_I,
    PTE_L,
    PTE_N,
    PTE_PP,
    PTE_R,
    PTE_V,
    PTE_W,
    PTES_PER_PTEG,
)
from framework.xen import costs
from framework.xen.domain import Domain, Vcpu
from framework.xen.p2m import (
    IO_HOLE_END_PFN,
    IO_HOLE_START_PFN,
    PfnClass,
    Translation,
    foreign_pfn,
    pfn_to_mfn,
)
from framework.xen.public.arch_powerpc import FOREIGN_PFN_BASE
from framework.xen.public.papr import (
    H_ANDCOND,
    H_AVPN,
    H_CLEAR_MOD,
    H_CLEAR_REF,
    H_ENTER,
    H_EXACT,
    H_NOT_FOUND,
    H_PARAMETER,
    H_PRIVILEGE,
    H_PROTECT,
    H_PTEG_FULL,
    H_READ,
    H_REMOVE,
    H_SUCCESS,
)

if TYPE_CHECKING:
    from framework.xen.hypervisor import Hypervisor

LARGE_PAGE_PFNS: Final = 1 << (LARGE_PAGE_SHIFT - PAGE_SHIFT)  # a 16 MiB page in 4 KiB frames
#: PP = 3: read-only whatever the SLB key (hw970.mmu._check_pte), for read-only grants.
PP_READ_ONLY: Final = 0x3
_RPN_SHIFT: Final = 12
_RPN_MASK: Final = 0x0FFFFFFFFFFFF000


def _pte_addr(v: Vcpu, ptex: int) -> int | None:
    dom = v.domain
    if not dom.htab_bytes or ptex >= dom.htab_bytes // 16:
        return None
    return dom.htab_maddr + ptex * 16


def _flush_all(xen: Hypervisor) -> None:
    # tlbie is broadcast (serialised by one global lock in Xen): every context drops it.
    xen.machine.bus.tlbie()


def h_enter(xen: Hypervisor, core: Core, v: Vcpu) -> int:
    flags, ptex, hi, lo = core.gpr(4), core.gpr(5), core.gpr(6), core.gpr(7)
    core.charge(costs.PAGE_TABLE_OP)
    dom = v.domain
    if _pte_addr(v, ptex) is None:
        return H_PARAMETER
    pfn = (lo & _RPN_MASK) >> _RPN_SHIFT
    large = bool(hi & PTE_L)
    if large and pfn % LARGE_PAGE_PFNS:
        return H_PARAMETER
    machine_frame = False
    try:
        tr = pfn_to_mfn(dom, pfn, xen.alloc)
    except NotOwned:
        if not dom.privileged and IO_HOLE_START_PFN <= pfn < IO_HOLE_END_PFN:
            return H_PRIVILEGE  # I/O space is for the privileged domain only
        if not (dom.privileged and _owned_by_another(xen, dom, pfn)):
            return H_PARAMETER
        # "MFN mappings are for dom0" (mm.c pfn2mfn): a privileged domain's pfn that is
        # no frame of its own but another domain's machine frame maps that frame.
        tr = Translation(pfn, PfnClass.FOREIGN)
        machine_frame = True
    cls = tr.cls
    if cls == PfnClass.LOGICAL:
        if large and not (dom.phys is not None and dom.phys.contiguous(pfn, LARGE_PAGE_PFNS)):
            return H_PARAMETER  # not machine-contiguous: cannot be one 16 MiB page
    elif cls == PfnClass.IO:
        if lo & PTE_W or not lo & PTE_I or not lo & PTE_G:
            return H_PARAMETER  # I/O pages must be W=0, I=1, G=1
    elif large:
        return H_PARAMETER  # grant frames and foreign slots are 4 KiB pages
    elif cls == PfnClass.GNTTAB:
        lo &= ~(PTE_I | PTE_G)  # ordinary cacheable memory, whatever the guest asked
    elif not tr.writable:
        lo = (lo & ~PTE_PP) | PP_READ_ONLY  # a read-only grant stays read-only
    new_lo = (lo & ~_RPN_MASK) | (tr.mfn << _RPN_SHIFT)
    mem = xen.memory
    group = ptex & ~(PTES_PER_PTEG - 1)
    slots = [ptex] if flags & H_EXACT else [group + i for i in range(PTES_PER_PTEG)]
    for slot in slots:
        addr = dom.htab_maddr + slot * 16
        if not mem.read_u64(addr) & PTE_V:
            mem.write_u64(addr + 8, new_lo)
            mem.write_u64(addr, hi | PTE_V)
            if cls == PfnClass.FOREIGN and not machine_frame:
                dom.grants.pte_entered(slot, pfn - FOREIGN_PFN_BASE)  # a reference on it
            core.set_gpr(4, slot)
            return H_SUCCESS
    return H_PTEG_FULL


def _owned_by_another(xen: Hypervisor, dom: Domain, mfn: int) -> bool:
    """Whether machine frame `mfn` is memory of a live domain other than `dom` (pfn2mfn
    insists the page is allocated, and not to the caller)."""
    return any(
        d is not dom and d.phys is not None and d.phys.owns_mfn(mfn) for d in xen.domains.values()
    )


def _matching(xen: Hypervisor, core: Core, v: Vcpu) -> tuple[int, int, int] | int:
    flags, ptex, avpn = core.gpr(4), core.gpr(5), core.gpr(6)
    addr = _pte_addr(v, ptex)
    if addr is None:
        return H_PARAMETER
    hi = xen.memory.read_u64(addr)
    if not hi & PTE_V:
        return H_NOT_FOUND
    if flags & H_AVPN and (hi & ~0x7F) != (avpn & ~0x7F):
        return H_NOT_FOUND
    if flags & H_ANDCOND and hi & avpn:
        return H_NOT_FOUND
    return addr, hi, xen.memory.read_u64(addr + 8)


def h_remove(xen: Hypervisor, core: Core, v: Vcpu) -> int:
    core.charge(costs.PAGE_TABLE_OP)
    m = _matching(xen, core, v)
    if isinstance(m, int):
        return m
    addr, hi, lo = m
    xen.memory.write_u64(addr, 0)
    _flush_all(xen)
    ptex = core.gpr(5)
    guest_lo = _guest_lo(xen, v, ptex, lo)
    grants = v.domain.grants
    if grants is not None and grants.foreign_ptes:
        grants.pte_removed(ptex)  # drops its reference on the foreign slot
    core.set_gpr(4, hi)
    core.set_gpr(5, guest_lo)
    return H_SUCCESS


def _guest_lo(xen: Hypervisor, v: Vcpu, ptex: int, lo: int) -> int:
    """The PTE's second word as the guest wrote it: RPN back to a PFN."""
    dom = v.domain
    mfn = (lo & _RPN_MASK) >> _RPN_SHIFT
    if dom.grants is not None and ptex in dom.grants.foreign_ptes:
        pfn = foreign_pfn(dom.grants.foreign_ptes[ptex])  # even a grant of its own page
    elif dom.phys is not None and dom.phys.owns_mfn(mfn):
        pfn = dom.phys.mfn_to_pfn(mfn)
    elif mfn in dom.grant_frames:
        pfn = xen.alloc.max_page + dom.grant_frames.index(mfn)
    else:
        return lo  # I/O pages: the pfn is the mfn
    return (lo & ~_RPN_MASK) | (pfn << _RPN_SHIFT)


def h_read(xen: Hypervisor, core: Core, v: Vcpu) -> int:
    core.charge(costs.PAGE_TABLE_OP)
    addr = _pte_addr(v, core.gpr(5))
    if addr is None:
        return H_PARAMETER
    core.set_gpr(4, xen.memory.read_u64(addr))
    core.set_gpr(5, _guest_lo(xen, v, core.gpr(5), xen.memory.read_u64(addr + 8)))
    return H_SUCCESS


def h_protect(xen: Hypervisor, core: Core, v: Vcpu) -> int:
    core.charge(costs.PAGE_TABLE_OP)
    flags = core.gpr(4)
    m = _matching(xen, core, v)
    if isinstance(m, int):
        return m
    addr, _hi, lo = m
    new = (lo & ~(PTE_PP | PTE_N)) | (flags & (PTE_PP | PTE_N))
    grants = v.domain.grants
    if grants is not None and grants.foreign_ptes:
        slot = grants.foreign_ptes.get(core.gpr(5))
        area = v.domain.foreign
        held = area.slots[slot] if slot is not None and area is not None else None
        if held is not None and held.readonly:
            new = (new & ~PTE_PP) | PP_READ_ONLY  # no H_PROTECT out of a read-only grant
    xen.memory.write_u64(addr + 8, new)
    _flush_all(xen)
    return H_SUCCESS


def _clear_bit(bit: int) -> Callable[[Hypervisor, Core, Vcpu], int]:
    """H_CLEAR_REF / H_CLEAR_MOD: clear R or C and return the old second PTE word in r4
    (xlate.c), as the guest wrote it (RPN a PFN, as H_READ shows it)."""

    def op(xen: Hypervisor, core: Core, v: Vcpu) -> int:
        core.charge(costs.PAGE_TABLE_OP)
        ptex = core.gpr(5)
        addr = _pte_addr(v, ptex)
        if addr is None:
            return H_PARAMETER
        if not xen.memory.read_u64(addr) & PTE_V:
            return H_NOT_FOUND
        lo = xen.memory.read_u64(addr + 8)
        if lo & bit:
            xen.memory.write_u64(addr + 8, lo & ~bit)
            _flush_all(xen)
        core.set_gpr(4, _guest_lo(xen, v, ptex, lo))
        return H_SUCCESS

    return op


#: The page-table hcalls; `framework.xen.hcall` dispatches them with the TCE ones.
PAGE_TABLE_CALLS: dict[int, Callable[[Hypervisor, Core, Vcpu], int]] = {
    H_ENTER: h_enter,
    H_REMOVE: h_remove,
    H_READ: h_read,
    H_PROTECT: h_protect,
    H_CLEAR_REF: _clear_bit(PTE_R),
    H_CLEAR_MOD: _clear_bit(PTE_C),
}
