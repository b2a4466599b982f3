"""H_PUT_TCE / H_GET_TCE through the real `sc 1` entry, and Xen's TCE table lifecycle."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from framework.errors import DmaFault
from framework.hw970.iommu import TCE_PAGE_READ, TCE_PAGE_WRITE
from framework.simulation import Simulation
from framework.trace.ids import K
from framework.xen import hcall
from framework.xen.p2m import IO_HOLE_START_PFN, ForeignSlot, PfnClass, foreign_pfn, pfn_to_mfn
from framework.xen.public.papr import H_GET_TCE, H_PARAMETER, H_PUT_TCE, H_SUCCESS
from framework.xen.tce import TCE_CALLS, create_tce_table, destroy_tce_tables, foreign_slot_tces
from framework.xen.tce_table import XenTceTable
from tests.xen.xenharness import Caller, domain_named

RW = TCE_PAGE_READ | TCE_PAGE_WRITE
DOM0_LIOBN, GUEST_LIOBN = 0x1000, 0x2000
WINDOW = 1 << 20


@pytest.fixture
def tables(
    booted: Simulation, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[XenTceTable, XenTceTable]]:
    """A table for dom0 and one for guest1, with the TCE hcalls registered; torn down after."""
    for token, handler in TCE_CALLS.items():
        monkeypatch.setitem(hcall.PAPR_CALLS, token, handler)
    xen = booted.xen
    dom0, guest = xen.domains[0], domain_named(booted, "guest1")
    t0 = create_tce_table(xen, dom0, DOM0_LIOBN, WINDOW)
    t1 = create_tce_table(xen, guest, GUEST_LIOBN, WINDOW)
    yield t0, t1
    destroy_tce_tables(xen, dom0)
    destroy_tce_tables(xen, guest)


def put(c: Caller, liobn: int, ioba: int, tce: int) -> int:
    return c.call(H_PUT_TCE, liobn, ioba, tce)


def get(c: Caller, liobn: int, ioba: int) -> tuple[int, int]:
    rc = c.call(H_GET_TCE, liobn, ioba)
    return rc, c.core.gpr(4)


def test_put_translates_the_pfn_and_dma_reaches_the_guest_page(
    booted: Simulation, tables: tuple[XenTceTable, XenTceTable], caller: Callable[[str], Caller]
) -> None:
    _, table = tables
    c = caller("guest1")
    assert c.dom.phys is not None
    for ioba, pfn in ((0x3000, 0x123), (0x4000, 0x5000)):  # one RMA page, one extent page
        tce = (pfn << 12) | RW
        assert put(c, GUEST_LIOBN, ioba, tce) == H_SUCCESS
        mfn = c.dom.phys.pfn_to_mfn(pfn)
        assert table.get(ioba) == (mfn << 12) | RW
        assert c.mem.read_u64(table.table_maddr + (ioba >> 12) * 8) == (mfn << 12) | RW
        assert get(c, GUEST_LIOBN, ioba) == (H_SUCCESS, tce)  # the guest's own view
        last = [r for r in booted.rec.records if r[0] == K.TCE_PUT][-1]
        assert (last[3], last[5], last[6], last[7]) == (c.dom.domid, GUEST_LIOBN, ioba, mfn)
    table.dma_write(0x4010, b"through the DART")
    assert c.read((0x5000 << 12) + 0x10, 16) == b"through the DART"


def test_dom0_also_goes_through_the_iommu_hcalls(
    booted: Simulation, tables: tuple[XenTceTable, XenTceTable], caller: Callable[[str], Caller]
) -> None:
    table, _ = tables
    c = caller("Domain-0")
    assert c.dom.phys is not None
    assert put(c, DOM0_LIOBN, 0, (0x42 << 12) | TCE_PAGE_READ) == H_SUCCESS
    assert table.get(0) == (c.dom.phys.pfn_to_mfn(0x42) << 12) | TCE_PAGE_READ
    # I/O space is never a DMA target, even for the privileged domain that may map it.
    io = IO_HOLE_START_PFN + 5
    assert pfn_to_mfn(c.dom, io, booted.xen.alloc).cls == PfnClass.IO
    assert put(c, DOM0_LIOBN, 0x1000, (io << 12) | RW) == H_PARAMETER
    # Nor are the domain's own grant-table frames.
    gnttab = booted.xen.alloc.max_page
    assert pfn_to_mfn(c.dom, gnttab, booted.xen.alloc).cls == PfnClass.GNTTAB
    assert put(c, DOM0_LIOBN, 0x1000, (gnttab << 12) | RW) == H_PARAMETER
    assert table.get(0x1000) == 0


def test_a_guest_cannot_program_another_domains_liobn(
    tables: tuple[XenTceTable, XenTceTable], caller: Callable[[str], Caller]
) -> None:
    dom0_table, _ = tables
    c = caller("guest1")
    assert put(c, DOM0_LIOBN, 0, (0x10 << 12) | RW) == H_PARAMETER
    assert get(c, DOM0_LIOBN, 0)[0] == H_PARAMETER
    assert dom0_table.get(0) == 0
    assert put(caller("guest2"), GUEST_LIOBN, 0, (0x10 << 12) | RW) == H_PARAMETER


def test_unowned_pfns_bad_iobas_and_reserved_bits_are_refused(
    tables: tuple[XenTceTable, XenTceTable], caller: Callable[[str], Caller]
) -> None:
    _, table = tables
    c = caller("guest1")
    assert c.dom.phys is not None
    beyond = c.dom.phys.nr_pages
    assert put(c, GUEST_LIOBN, 0, (beyond << 12) | RW) == H_PARAMETER
    assert put(c, GUEST_LIOBN, 0, (IO_HOLE_START_PFN << 12) | RW) == H_PARAMETER  # not dom0
    assert put(c, GUEST_LIOBN, 0x800, (0x10 << 12) | RW) == H_PARAMETER  # unaligned
    assert put(c, GUEST_LIOBN, WINDOW, (0x10 << 12) | RW) == H_PARAMETER  # beyond window
    assert put(c, GUEST_LIOBN, 0, (0x10 << 12) | RW | 0x40) == H_PARAMETER  # reserved bit
    assert get(c, GUEST_LIOBN, WINDOW)[0] == H_PARAMETER
    assert table.get(0) == 0 and get(c, GUEST_LIOBN, 0) == (H_SUCCESS, 0)


def test_a_failed_put_leaves_the_old_entry(
    tables: tuple[XenTceTable, XenTceTable], caller: Callable[[str], Caller]
) -> None:
    _, table = tables
    c = caller("guest1")
    assert put(c, GUEST_LIOBN, 0x2000, (0x20 << 12) | RW) == H_SUCCESS
    before = table.get(0x2000)
    assert put(c, GUEST_LIOBN, 0x2000, (0xFFFFF << 12) | RW) == H_PARAMETER
    assert table.get(0x2000) == before
    assert get(c, GUEST_LIOBN, 0x2000) == (H_SUCCESS, (0x20 << 12) | RW)


def test_a_tce_without_permissions_clears_the_entry(
    booted: Simulation, tables: tuple[XenTceTable, XenTceTable], caller: Callable[[str], Caller]
) -> None:
    _, table = tables
    c = caller("guest1")
    assert put(c, GUEST_LIOBN, 0x5000, (0x30 << 12) | RW) == H_SUCCESS
    table.dma_read(0x5000, 64)
    assert put(c, GUEST_LIOBN, 0x5000, 0x30 << 12) == H_SUCCESS
    assert table.get(0x5000) == 0
    assert get(c, GUEST_LIOBN, 0x5000) == (H_SUCCESS, 0x30 << 12)  # exactly what was written
    last = [r for r in booted.rec.records if r[0] == K.TCE_PUT][-1]
    assert (last[5], last[6], last[7]) == (GUEST_LIOBN, 0x5000, 0)
    with pytest.raises(DmaFault, match="no TCE maps this page"):
        table.dma_read(0x5000, 64)


def test_foreign_pages_map_with_the_grants_permission(
    booted: Simulation, tables: tuple[XenTceTable, XenTceTable], caller: Callable[[str], Caller]
) -> None:
    table, _ = tables
    c = caller("Domain-0")
    guest2 = domain_named(booted, "guest2")
    assert guest2.phys is not None and c.dom.foreign is not None
    granted = guest2.phys.pfn_to_mfn(0x32)  # a scratch page of the test guests
    ro = c.dom.foreign.alloc(ForeignSlot(granted, guest2.domid, 5, readonly=True))
    rw = c.dom.foreign.alloc(ForeignSlot(granted, guest2.domid, 6, readonly=False))
    assert ro is not None and rw is not None
    try:
        ro_pfn, rw_pfn = foreign_pfn(ro), foreign_pfn(rw)
        assert put(c, DOM0_LIOBN, 0x7000, (ro_pfn << 12) | RW) == H_PARAMETER
        assert put(c, DOM0_LIOBN, 0x7000, (ro_pfn << 12) | TCE_PAGE_READ) == H_SUCCESS
        assert table.get(0x7000) == (granted << 12) | TCE_PAGE_READ
        assert put(c, DOM0_LIOBN, 0x8000, (rw_pfn << 12) | RW) == H_SUCCESS
        table.dma_write(0x8000, b"granted")  # a backend's device fills the guest's page
        assert c.mem.read(granted << 12, 7) == b"granted"
        assert get(c, DOM0_LIOBN, 0x8000) == (H_SUCCESS, (rw_pfn << 12) | RW)
        # Xen knows which TCEs hold each slot (a grant unmap must wait for them).
        assert foreign_slot_tces(c.dom, ro) == [(DOM0_LIOBN, 0x7000)]
        assert foreign_slot_tces(c.dom, rw) == [(DOM0_LIOBN, 0x8000)]
        known = dict(table.foreign)
        table.rescan_foreign()  # rebuilt from the guest view in memory alone
        assert table.foreign == known
        assert put(c, DOM0_LIOBN, 0x7000, 0) == H_SUCCESS  # cleared: no longer holds it
        assert foreign_slot_tces(c.dom, ro) == []
        assert put(c, DOM0_LIOBN, 0x8000, 0) == H_SUCCESS
        # An unmapped foreign slot is not a page at all.
        assert put(c, DOM0_LIOBN, 0x9000, (foreign_pfn(1023) << 12) | RW) == H_PARAMETER
    finally:
        c.dom.foreign.free(ro)
        c.dom.foreign.free(rw)


def test_create_refuses_a_liobn_in_use_and_bad_windows(
    booted: Simulation, tables: tuple[XenTceTable, XenTceTable]
) -> None:
    xen = booted.xen
    guest3 = domain_named(booted, "guest3")
    with pytest.raises(ValueError, match=r"liobn 0x1000 is already in use by d0"):
        create_tce_table(xen, guest3, DOM0_LIOBN, WINDOW)
    with pytest.raises(ValueError, match="multiple of 4 KiB"):
        create_tce_table(xen, guest3, 0x3000, 1000)
    with pytest.raises(ValueError, match="32 bits"):
        create_tce_table(xen, guest3, 1 << 32, WINDOW)
    assert guest3.tce_tables == {}


def test_destroy_frees_exactly_what_create_allocated(booted: Simulation) -> None:
    xen = booted.xen
    guest3 = domain_named(booted, "guest3")
    free_before = xen.alloc.free_bytes
    n = len(booted.rec)
    big = create_tce_table(xen, guest3, 0x4000, 4 << 30)  # 4 GiB window: 8 MiB of TCEs
    small = create_tce_table(xen, guest3, 0x4001, WINDOW)
    assert big.table_bytes == 8 << 20 and small.table_bytes == 4096
    assert xen.alloc.free_bytes == free_before - 2 * (8 << 20) - 2 * 4096
    assert xen.memory.read(big.table_maddr, 4096) == bytes(4096)
    destroy_tce_tables(xen, guest3)
    assert xen.alloc.free_bytes == free_before and guest3.tce_tables == {}
    new = booted.rec.records_since(n)
    allocs = [(r[3], r[5], r[6], r[9]) for r in new if r[0] == K.MEM_ALLOC]
    frees = [(r[3], r[5], r[6], r[9]) for r in new if r[0] == K.MEM_FREE]
    assert sorted(allocs) == sorted(frees)
    assert [a[3] for a in allocs] == ["TCE table liobn=0x4000", "TCE table liobn=0x4001"]
    with pytest.raises(DmaFault, match="torn down"):
        small.dma_read(0, 8)
