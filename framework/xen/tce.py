"""Xen's side of the IOMMU: TCE tables per LIOBN, H_PUT_TCE and H_GET_TCE.

Translation is always on, so a guest (dom0 included) never knows machine frames: the RPN
of the TCE it passes is a PFN, and Xen puts the matching MFN in the table the device
walks ("always requires IOMMU hcalls"). Only the domain's own memory (LOGICAL) and pages
granted to it (FOREIGN) may be mapped for DMA; a read-only grant only for device reads.

Each table's allocation holds two arrays of the same shape, both in machine memory so a
memory image carries them: the hardware TCEs (machine RPNs) the device walks, then Xen's
copy of exactly what the guest wrote (PFN RPNs), which H_GET_TCE returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from framework.errors import NotOwned
from framework.hw970.core import Core
from framework.hw970.iommu import (
    TCE_PAGE_READ,
    TCE_PAGE_SHIFT,
    TCE_PAGE_WRITE,
    TCE_RPN_MASK,
    TCE_VALID_BITS,
    tce_table_bytes,
)
from framework.hw970.memory import PAGE_SHIFT, PAGE_SIZE
from framework.trace.ids import K
from framework.xen import costs
from framework.xen.domain import Domain, Vcpu
from framework.xen.p2m import PfnClass, pfn_to_mfn
from framework.xen.public.arch_powerpc import FOREIGN_PFN_BASE
from framework.xen.public.papr import H_GET_TCE, H_PARAMETER, H_PUT_TCE, H_SUCCESS
from framework.xen.tce_table import XenTceTable

if TYPE_CHECKING:
    from framework.xen.hypervisor import Hypervisor

__all__ = [
    "LIOBN_MAX",
    "TCE_CALLS",
    "XenTceTable",
    "create_tce_table",
    "destroy_tce_table",
    "destroy_tce_tables",
    "foreign_slot_tces",
    "h_get_tce",
    "h_put_tce",
]

LIOBN_MAX: Final = (1 << 32) - 1  # a LIOBN is a 32-bit cell in the device tree (ibm,dma-window)
_DMA_CLASSES: Final = (PfnClass.LOGICAL, PfnClass.FOREIGN)


def _label(liobn: int) -> str:
    return f"TCE table liobn={liobn:#x}"


def create_tce_table(xen: Hypervisor, dom: Domain, liobn: int, window_bytes: int) -> XenTceTable:
    """Give `dom` a zeroed TCE table for `liobn` covering `window_bytes` of I/O space."""
    if not 0 <= liobn <= LIOBN_MAX:
        raise ValueError(f"liobn {liobn:#x} does not fit in 32 bits")
    for other in xen.domains.values():
        if liobn in other.tce_tables:
            raise ValueError(f"liobn {liobn:#x} is already in use by d{other.domid}")
    table_bytes = tce_table_bytes(window_bytes)  # ValueError for a bad window
    nbytes = 2 * table_bytes
    mfn = xen.alloc.alloc_aligned(nbytes, PAGE_SIZE, f"{_label(liobn)} of d{dom.domid}")
    maddr = mfn << PAGE_SHIFT
    xen.memory.zero(maddr, nbytes)
    table = XenTceTable(xen.memory, liobn, maddr, window_bytes)
    dom.tce_tables[liobn] = table
    xen.rec.emit(
        K.MEM_ALLOC,
        xen.now(),
        xen.running_cpu(),
        dom.domid,
        -1,
        mfn,
        table.alloc_pages,
        text=_label(liobn),
    )
    return table


def destroy_tce_tables(xen: Hypervisor, dom: Domain) -> None:
    """Tear down every TCE table of `dom` (devices then fault) and free their frames."""
    for liobn in sorted(dom.tce_tables):
        destroy_tce_table(xen, dom, liobn)


def destroy_tce_table(xen: Hypervisor, dom: Domain, liobn: int) -> None:
    """Tear down `dom`'s table for `liobn` (its device's DMA then faults); free its frames."""
    table = dom.tce_tables.pop(liobn)
    table.disable()
    mfn = table.table_maddr >> PAGE_SHIFT
    if isinstance(table, XenTceTable):
        table.foreign.clear()
        pages = table.alloc_pages
    else:
        pages = table.table_bytes >> PAGE_SHIFT
    xen.alloc.free(mfn, pages)
    xen.rec.emit(
        K.MEM_FREE,
        xen.now(),
        xen.running_cpu(),
        dom.domid,
        -1,
        mfn,
        pages,
        text=_label(liobn),
    )


def foreign_slot_tces(dom: Domain, slot: int) -> list[tuple[int, int]]:
    """(liobn, ioba) of every TCE of `dom` that maps foreign area `slot`, sorted.

    A grant unmap must refuse while this is not empty: the device could still DMA into
    the granting domain's page after the grant ended.
    """
    found = [
        (liobn, ioba)
        for liobn, table in dom.tce_tables.items()
        if isinstance(table, XenTceTable)
        for ioba, s in table.foreign.items()
        if s == slot
    ]
    return sorted(found)


def _table_of(v: Vcpu, liobn: int, ioba: int) -> XenTceTable | None:
    """The caller's table for `liobn` if `ioba` is a valid entry of it, else None."""
    table = v.domain.tce_tables.get(liobn)
    if not isinstance(table, XenTceTable):
        return None
    try:
        table.index(ioba)
    except ValueError:
        return None
    return table


def h_put_tce(xen: Hypervisor, core: Core, v: Vcpu) -> int:
    """H_PUT_TCE(liobn, ioba, tce): map the caller's PFN for DMA, or clear the entry."""
    liobn, ioba, tce = core.gpr(4), core.gpr(5), core.gpr(6)
    core.charge(costs.PAGE_TABLE_OP)
    dom = v.domain
    table = _table_of(v, liobn, ioba)
    if table is None or tce & ~TCE_VALID_BITS:
        return H_PARAMETER
    perms = tce & (TCE_PAGE_READ | TCE_PAGE_WRITE)
    mfn = 0
    slot: int | None = None  # the foreign area slot mapped, if any
    if perms:
        pfn = (tce & TCE_RPN_MASK) >> TCE_PAGE_SHIFT
        try:
            tr = pfn_to_mfn(dom, pfn, xen.alloc)
        except NotOwned:
            return H_PARAMETER
        if tr.cls not in _DMA_CLASSES:
            return H_PARAMETER  # grant frames and I/O space are not DMA targets
        if perms & TCE_PAGE_WRITE and not tr.writable:
            return H_PARAMETER  # a read-only grant: the device may not store into it
        mfn = tr.mfn
        if tr.cls == PfnClass.FOREIGN:
            slot = pfn - FOREIGN_PFN_BASE
    table.put(ioba, (mfn << TCE_PAGE_SHIFT) | perms)
    table.put_guest(ioba, tce)
    table.foreign.pop(ioba, None)
    if slot is not None:
        table.foreign[ioba] = slot
    xen.rec.emit(K.TCE_PUT, core.now_ns(), core.cpu_id, dom.domid, v.vcpu_id, liobn, ioba, mfn)
    return H_SUCCESS


def h_get_tce(xen: Hypervisor, core: Core, v: Vcpu) -> int:
    """H_GET_TCE(liobn, ioba): the TCE as the guest wrote it (PFN-based), in r4."""
    liobn, ioba = core.gpr(4), core.gpr(5)
    core.charge(costs.PAGE_TABLE_OP)
    table = _table_of(v, liobn, ioba)
    if table is None:
        return H_PARAMETER
    core.set_gpr(4, table.get_guest(ioba))
    return H_SUCCESS


#: The IOMMU hcalls; `framework.xen.hcall` dispatches them with the page-table ones.
TCE_CALLS: dict[int, Callable[[Hypervisor, Core, Vcpu], int]] = {
    H_PUT_TCE: h_put_tce,
    H_GET_TCE: h_get_tce,
}
