"""PAPR hcalls for the hashed page table: H_ENTER, H_REMOVE, H_READ, H_PROTECT,
H_CLEAR_REF, H_CLEAR_MOD.

Translation is always on: the guest names PFNs in its PTEs and Xen turns them into MFNs
(the "VFN->PFN half is the guest's, PFN->MFN is Xen's").  A PFN the domain does not own
is refused, so a guest can never map another domain's frames.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from framework.hw970.core import Core
from framework.hw970.mmu import PTE_G, PTE_I, PTE_L, PTE_N, PTE_PP, PTE_V, PTE_W, PTES_PER_PTEG
from framework.xen import costs
from framework.xen.abi import (
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
from framework.xen.domain import Vcpu
from framework.xen.mm import NotOwned

if TYPE_CHECKING:
    from framework.xen.hypervisor import Hypervisor

IO_HOLE_START_PFN = (2 << 30) >> 12
IO_HOLE_END_PFN = (4 << 30) >> 12
FOREIGN_PFN_BIT = 1 << 22
LARGE_PAGE_PFNS = 1 << 12
_RPN_SHIFT = 12
_RPN_MASK = 0x0FFFFFFFFFFFF000


def _pte_addr(v: Vcpu, ptex: int) -> int | None:
    dom = v.domain
    if not dom.htab_bytes or ptex >= dom.htab_bytes // 16:
        return None
    return dom.htab_maddr + ptex * 16


def _flush_all(xen: Hypervisor) -> None:
    # tlbie is broadcast (serialised by one global lock in Xen): every core drops it.
    for core in xen.machine.cores:
        core.flush_tlb()


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
    if pfn & FOREIGN_PFN_BIT:
        return H_PARAMETER  # foreign (grant) mappings arrive with the grant table
    if IO_HOLE_START_PFN <= pfn < IO_HOLE_END_PFN:
        if not dom.privileged:
            return H_PRIVILEGE
        if lo & PTE_W or not lo & PTE_I or not lo & PTE_G:
            return H_PARAMETER  # I/O pages must be W=0, I=1, G=1
        mfn = pfn
    else:
        try:
            mfn = dom.gpa_to_maddr(pfn << 12) >> 12
            if large:
                last = dom.gpa_to_maddr((pfn + LARGE_PAGE_PFNS - 1) << 12) >> 12
                if last != mfn + LARGE_PAGE_PFNS - 1:
                    return H_PARAMETER  # not machine-contiguous: cannot be one 16 MiB page
        except NotOwned:
            return H_PARAMETER
    new_lo = (lo & ~_RPN_MASK) | (mfn << _RPN_SHIFT)
    mem = xen.memory
    group = ptex & ~(PTES_PER_PTEG - 1)
    slots = [ptex] if flags & H_EXACT else [group + i for i in range(PTES_PER_PTEG)]
    for slot in slots:
        addr = dom.htab_maddr + slot * 16
        if not mem.read_u64(addr) & PTE_V:
            mem.write_u64(addr + 8, new_lo)
            mem.write_u64(addr, hi | PTE_V)
            core.set_gpr(4, slot)
            return H_SUCCESS
    return H_PTEG_FULL


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
    core.set_gpr(4, hi)
    core.set_gpr(5, _guest_lo(v, lo))
    return H_SUCCESS


def _guest_lo(v: Vcpu, lo: int) -> int:
    """The PTE's second word as the guest wrote it: RPN back to a PFN."""
    dom = v.domain
    mfn = (lo & _RPN_MASK) >> _RPN_SHIFT
    if dom.phys is not None and dom.phys.owns_mfn(mfn):
        return (lo & ~_RPN_MASK) | (dom.phys.mfn_to_pfn(mfn) << _RPN_SHIFT)
    return lo


def h_read(xen: Hypervisor, core: Core, v: Vcpu) -> int:
    core.charge(costs.PAGE_TABLE_OP)
    addr = _pte_addr(v, core.gpr(5))
    if addr is None:
        return H_PARAMETER
    core.set_gpr(4, xen.memory.read_u64(addr))
    core.set_gpr(5, _guest_lo(v, xen.memory.read_u64(addr + 8)))
    return H_SUCCESS


def h_protect(xen: Hypervisor, core: Core, v: Vcpu) -> int:
    core.charge(costs.PAGE_TABLE_OP)
    flags = core.gpr(4)
    m = _matching(xen, core, v)
    if isinstance(m, int):
        return m
    addr, _hi, lo = m
    new = (lo & ~(PTE_PP | PTE_N)) | (flags & (PTE_PP | PTE_N))
    xen.memory.write_u64(addr + 8, new)
    _flush_all(xen)
    return H_SUCCESS


def _clear_bit(bit: int) -> Callable[[Hypervisor, Core, Vcpu], int]:
    def op(xen: Hypervisor, core: Core, v: Vcpu) -> int:
        core.charge(costs.PAGE_TABLE_OP)
        addr = _pte_addr(v, core.gpr(5))
        if addr is None:
            return H_PARAMETER
        if not xen.memory.read_u64(addr) & PTE_V:
            return H_NOT_FOUND
        lo = xen.memory.read_u64(addr + 8)
        xen.memory.write_u64(addr + 8, lo & ~bit)
        _flush_all(xen)
        core.set_gpr(4, lo & bit)
        return H_SUCCESS

    return op


PAPR_CALLS: dict[int, Callable[[Hypervisor, Core, Vcpu], int]] = {
    H_ENTER: h_enter,
    H_REMOVE: h_remove,
    H_READ: h_read,
    H_PROTECT: h_protect,
    H_CLEAR_REF: _clear_bit(0x100),
    H_CLEAR_MOD: _clear_bit(0x80),
}
