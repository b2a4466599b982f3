"""Grant tables through real hypercalls: frames, setup/query, map/unmap with the foreign
area and H_ENTER, copy, transfer (and the p2m holes it needs), and the destroy guard."""

from __future__ import annotations

import pytest

import analysis  # noqa: F401  (registers DataFrame.xen)
from framework.dom0.toolstack import Toolstack
from framework.errors import NotOwned
from framework.guest.grants import GrantTableClient
from framework.hw970.mmu import (
    ACCESS_READ,
    ACCESS_WRITE,
    PTE_G,
    PTE_I,
    PTE_L,
    PTE_PP,
    PTE_V,
    Fault,
    TranslationState,
    pte_avpn,
    pteg_index,
)
from framework.hw970.regs import DSISR_PROTECTION, MSR_DR, MSR_IR, VEC_DSI
from framework.simulation import Simulation
from framework.xen.domain import Domain, DomainState
from framework.xen.grant_table import entry_maddr
from framework.xen.mm import INVALID_MFN, PhysMap, SparsePhysMap
from framework.xen.p2m import ForeignArea, ForeignSlot, foreign_pfn
from framework.xen.p2m import pfn_to_mfn as p2m_pfn_to_mfn
from framework.xen.public.arch_powerpc import (
    EXTENT_PAGES,
    FOREIGN_GPA_BASE,
    FOREIGN_SLOTS,
    NR_GRANT_FRAMES,
)
from framework.xen.public.domctl import XEN_DOMCTL_destroydomain, XEN_DOMCTL_pausedomain
from framework.xen.public.errno import EFAULT, EINVAL, ENOSYS, EPERM
from framework.xen.public.grant_table import (
    GNTTAB_COPY,
    GNTTAB_MAP_GRANT_REF,
    GNTTAB_QUERY_SIZE,
    GNTTAB_SETUP_TABLE,
    GNTTAB_TRANSFER,
    GNTTAB_UNMAP_GRANT_REF,
    GRANT_ENTRY,
    NR_GRANT_ENTRIES,
    GNTCOPY_dest_gref,
    GNTCOPY_source_gref,
    GNTMAP_application_map,
    GNTMAP_device_map,
    GNTMAP_host_map,
    GNTMAP_readonly,
    GNTST_bad_copy_arg,
    GNTST_bad_domain,
    GNTST_bad_gntref,
    GNTST_bad_handle,
    GNTST_bad_page,
    GNTST_bad_virt_addr,
    GNTST_general_error,
    GNTST_no_device_space,
    GNTST_okay,
    GNTST_permission_denied,
    GNTTABOP_copy,
    GNTTABOP_map_grant_ref,
    GNTTABOP_query_size,
    GNTTABOP_setup_table,
    GNTTABOP_transfer,
    GNTTABOP_unmap_grant_ref,
    GTF_accept_transfer,
    GTF_permit_access,
    GTF_reading,
    GTF_readonly,
    GTF_transfer_committed,
    GTF_transfer_completed,
    GTF_writing,
    gntst_name,
)
from framework.xen.public.layout import Layout, signed16
from framework.xen.public.papr import (
    H_AVPN,
    H_ENTER,
    H_PARAMETER,
    H_PROTECT,
    H_READ,
    H_REMOVE,
    H_SUCCESS,
)
from framework.xen.public.xen import DOMID_SELF, HYPERVISOR_grant_table_op, xen_mark
from framework.xen.public.xencomm import build_descriptor, descriptor_for_buffer
from tests.xen.xenharness import Caller, domain_named, quickstart

MiB = 1 << 20
OPS = 0x34000  # guest-physical op arrays (4 pages), free in every test guest's RMA
OPS_DESC = 0x38000
FRAMES = 0x39000  # setup_table's frame list
FRAMES_DESC = 0x3A000
DATA_PFN = 0x2000  # pages guests grant (32 MiB into the RMA, unused by the kernel)
VSID = 0x5EED  # dom0's private test mapping of foreign slots


# --- helpers ---------------------------------------------------------------------------------
def gnttab(c: Caller, cmd: int, layout: Layout, items: list[dict[str, int]]) -> tuple[int, list]:
    """GNTTABOP `cmd` on an array of structures passed through a xencomm descriptor."""
    size = layout.size
    data = b"".join(layout.pack(**it) for it in items)
    c.write(OPS, data)
    c.write(OPS_DESC, build_descriptor(descriptor_for_buffer(OPS, max(len(data), 1))))
    rc = c.call(xen_mark(HYPERVISOR_grant_table_op), cmd, OPS_DESC, len(items))
    raw = c.read(OPS, size * len(items))
    return rc, [layout.unpack(raw[i * size : (i + 1) * size]) for i in range(len(items))]


def one(c: Caller, cmd: int, layout: Layout, **fields: int) -> dict[str, int]:
    rc, [out] = gnttab(c, cmd, layout, [fields])
    assert rc == 0
    out["status"] = signed16(out["status"])
    return out


def setup_table(c: Caller, dom: int, nr_frames: int) -> int:
    c.write(FRAMES_DESC, build_descriptor([FRAMES]))
    op = {"dom": dom, "nr_frames": nr_frames, "frame_list": FRAMES_DESC}
    return one(c, GNTTABOP_setup_table, GNTTAB_SETUP_TABLE, **op)["status"]


def map_ref(
    c: Caller, dom: int, ref: int, flags: int = GNTMAP_host_map, host_addr: int = 0
) -> dict[str, int]:
    """dom0 (usually) maps grant `ref` of domain `dom`; the op as Xen wrote it back."""
    op = {"host_addr": host_addr, "flags": flags, "ref": ref, "dom": dom}
    return one(c, GNTTABOP_map_grant_ref, GNTTAB_MAP_GRANT_REF, **op)


def unmap(c: Caller, mapped: dict[str, int], **override: int) -> int:
    op = {"host_addr": mapped["host_addr"], "handle": mapped["handle"], "dev_bus_addr": 0}
    return one(c, GNTTABOP_unmap_grant_ref, GNTTAB_UNMAP_GRANT_REF, **op | override)["status"]


def copy(c: Caller, **fields: int) -> int:
    return one(c, GNTTABOP_copy, GNTTAB_COPY, **fields)["status"]


class GuestPhys:
    """A domain's guest-physical memory as its validated PTEs reach it (p2m translation,
    GNTTAB pfns included): the accessor a `GrantTableClient` uses in these tests."""

    def __init__(self, sim: Simulation, dom: Domain) -> None:
        self.sim, self.dom = sim, dom

    def maddr(self, gpa: int) -> int:
        tr = p2m_pfn_to_mfn(self.dom, gpa >> 12, self.sim.xen.alloc)
        return (tr.mfn << 12) | (gpa & 0xFFF)

    def read(self, gpa: int, n: int) -> bytes:
        return self.sim.machine.memory.read(self.maddr(gpa), n)

    def write(self, gpa: int, data: bytes) -> None:
        self.sim.machine.memory.write(self.maddr(gpa), data)


def client(sim: Simulation, dom: Domain) -> GrantTableClient:
    return GrantTableClient(GuestPhys(sim, dom), sim.xen.alloc.max_page << 12)


def entry(sim: Simulation, dom: Domain, ref: int) -> dict[str, int]:
    """Xen's view of an entry: straight from the grant frame in machine memory."""
    return GRANT_ENTRY.unpack(sim.machine.memory.read(entry_maddr(dom, ref), 8))


class Dom0Mapping:
    """dom0 mapping foreign slots at 4 KiB pages of its own test segment (SLB + H_ENTER)."""

    def __init__(self, c: Caller) -> None:
        self.c = c
        self.tr = TranslationState(msr=MSR_IR | MSR_DR, sdr1=c.dom.sdr1)
        self.n_ptegs = c.dom.htab_bytes // 128

    def ea(self, gpa: int) -> int:
        return 0x7_0000_0000 | (gpa & 0xFFFFFFF)

    def enter(self, gpa: int, pp: int = 2) -> tuple[int, int]:
        """H_ENTER a 4 KiB PTE for guest-physical `gpa`; returns (rc, HTAB index)."""
        ea = self.ea(gpa)
        self.tr.slbmte(VSID << 12, (ea >> 28 << 28) | 0x8000000 | 60)
        ptex = pteg_index(VSID, ea, 12, False, self.n_ptegs) * 8
        hi = (pte_avpn(VSID, ea) << 7) | PTE_V
        rc = self.c.call(H_ENTER, 0, ptex, hi, (gpa & ~0xFFF) | 0x10 | pp)
        return rc, self.c.core.gpr(4)

    def translate(self, gpa: int, access: int) -> tuple[int, int] | Fault:
        return self.c.core.mmu.hashed(self.tr, self.ea(gpa), access)

    def pte_lo(self, ptex: int) -> int:
        return self.c.mem.read_u64(self.c.dom.htab_maddr + ptex * 16 + 8)


def large_ptes(sim: Simulation, dom: Domain, mfn: int) -> list[tuple[int, int]]:
    """(HTAB index, first word) of the domain's valid 16 MiB PTEs covering `mfn`."""
    mem = sim.machine.memory
    out = []
    for ptex in range(dom.htab_bytes // 16):
        hi = mem.read_u64(dom.htab_maddr + ptex * 16)
        if hi & PTE_V and hi & PTE_L:
            lo = mem.read_u64(dom.htab_maddr + ptex * 16 + 8)
            if (lo >> 24) == (mfn << 12) >> 24:
                out.append((ptex, hi))
    return out


@pytest.fixture
def sim() -> Simulation:
    """A quick-start machine 2 ms in, of each test's own (they map, move and destroy)."""
    s = quickstart("2ms")
    s.run()
    return s


def free_slots(area: ForeignArea | None) -> list[int]:
    """Indices of the foreign area's free slots, lowest first (the daemons hold some)."""
    assert area is not None
    return [i for i, held in enumerate(area.slots) if held is None]


def callers(sim: Simulation) -> tuple[Caller, Caller, Caller]:
    return (
        Caller(sim, sim.xen.domains[0]),
        Caller(sim, domain_named(sim, "guest2")),
        Caller(sim, domain_named(sim, "guest3")),
    )


# --- grant frames ----------------------------------------------------------------------------
def test_every_domain_gets_grant_frames_and_domus_get_seeded_entries(sim: Simulation) -> None:
    xen, mem = sim.xen, sim.machine.memory
    dom0_area = xen.domains[0].foreign
    assert dom0_area is not None
    frames = [m for d in xen.domains.values() for m in d.grant_frames]
    assert len(frames) == NR_GRANT_FRAMES * len(xen.domains) == len(set(frames))
    for dom in xen.domains.values():
        assert len(dom.grant_frames) == NR_GRANT_FRAMES
        assert not any(dom.phys.owns_mfn(m) for m in dom.grant_frames)  # Xen's, shared
        for k, mfn in enumerate(dom.grant_frames):  # reachable at the GNTTAB pfns only
            tr = p2m_pfn_to_mfn(dom, xen.alloc.max_page + k, xen.alloc)
            assert tr.mfn == mfn
        assert (dom.foreign is not None) == dom.privileged
        pages = dom.rma_size >> 12
        if dom.privileged:
            assert mem.read(dom.grant_frames[0] << 12, 16) == bytes(16)
            continue
        # Seeded for dom0 and, by now, mapped writable by xenconsoled (0) and xenstored (1).
        pinned = GTF_permit_access | GTF_reading | GTF_writing
        assert entry(sim, dom, 0) == {"flags": pinned, "domid": 0, "frame": pages - 2}
        assert entry(sim, dom, 1) == {"flags": pinned, "domid": 0, "frame": pages - 3}
        assert entry(sim, dom, 2) == {"flags": 0, "domid": 0, "frame": 0}
        for ref, pfn in ((0, pages - 2), (1, pages - 3)):
            act = dom.grants.active[ref]
            assert (act.domid, act.mfn, act.host_w, act.pins) == (0, dom.phys.pfn_to_mfn(pfn), 1, 1)
            held = [
                s for s in dom0_area.slots if s is not None and (s.domid, s.ref) == (dom.domid, ref)
            ]
            assert held == [ForeignSlot(dom.phys.pfn_to_mfn(pfn), dom.domid, ref, False)]
        assert sorted(dom.grants.active) == [0, 1]
    assert dom0_area.in_use() == 2 * (len(xen.domains) - 1)  # nothing else is mapped
    df = sim.rec.to_dataframe().xen.wide()
    allocs = df[(df["kind"] == "mem.alloc") & (df["text"] == "grant frames")]
    assert sorted(allocs["dom"]) == sorted(xen.domains)
    assert set(allocs["count"]) == {NR_GRANT_FRAMES}


def test_setup_table_and_query_size(sim: Simulation) -> None:
    dom0, g2, _ = callers(sim)
    base = sim.xen.alloc.max_page
    assert setup_table(g2, DOMID_SELF, 4) == GNTST_okay
    raw = g2.read(FRAMES, 32)
    pfns = [int.from_bytes(raw[8 * i : 8 * i + 8], "big") for i in range(4)]
    assert pfns == [base + i for i in range(4)]  # the GNTTAB pfns, not machine frames
    assert setup_table(g2, g2.dom.domid, 1) == GNTST_okay
    assert setup_table(g2, DOMID_SELF, 5) == GNTST_general_error
    assert setup_table(g2, 0, 1) == GNTST_permission_denied
    assert setup_table(dom0, g2.dom.domid, 2) == GNTST_okay  # privileged: any domain
    assert setup_table(dom0, 77, 1) == GNTST_bad_domain
    q = one(g2, GNTTABOP_query_size, GNTTAB_QUERY_SIZE, dom=DOMID_SELF)
    assert (q["nr_frames"], q["max_nr_frames"], q["status"]) == (4, 4, GNTST_okay)
    q = one(g2, GNTTABOP_query_size, GNTTAB_QUERY_SIZE, dom=0)
    assert q["status"] == GNTST_permission_denied
    # Whole-call errors: a batch of two, an unknown command, an unreachable frame list.
    q1 = {"dom": DOMID_SELF}
    assert gnttab(g2, GNTTABOP_query_size, GNTTAB_QUERY_SIZE, [q1, q1])[0] == -EINVAL
    assert gnttab(g2, 3, GNTTAB_QUERY_SIZE, [q1])[0] == -ENOSYS
    g2.write(FRAMES_DESC, build_descriptor([(g2.dom.tot_pages + 5) << 12]))
    op = {"dom": DOMID_SELF, "nr_frames": 1, "frame_list": FRAMES_DESC}
    assert gnttab(g2, GNTTABOP_setup_table, GNTTAB_SETUP_TABLE, [op])[0] == -EFAULT


def test_grant_frames_map_as_cacheable_4k_pages_only(sim: Simulation) -> None:
    _, g2, _ = callers(sim)
    m = Dom0Mapping(g2)
    gnttab_gpa = sim.xen.alloc.max_page << 12
    hi_large = (pte_avpn(VSID, m.ea(gnttab_gpa)) << 7) | PTE_V | PTE_L
    assert g2.call(H_ENTER, 0, 0, hi_large, gnttab_gpa | 2) == H_PARAMETER
    rc, ptex = m.enter(gnttab_gpa, pp=2 | PTE_I | PTE_G)
    assert rc == H_SUCCESS
    lo = m.pte_lo(ptex)
    assert lo >> 12 == g2.dom.grant_frames[0] and not lo & (PTE_I | PTE_G)
    # H_READ gives the PTE back as the guest wrote it: the GNTTAB pfn.
    assert g2.call(H_READ, 0, ptex) == H_SUCCESS
    assert g2.core.gpr(5) >> 12 == gnttab_gpa >> 12
    got = m.translate(gnttab_gpa + 8, ACCESS_READ)
    assert not isinstance(got, Fault) and got[0] == g2.dom.grant_frames[0] << 12
    assert g2.call(H_REMOVE, 0, ptex, 0) == H_SUCCESS


# --- map / unmap -----------------------------------------------------------------------------
def test_map_a_granted_page_enter_a_pte_and_unmap(sim: Simulation) -> None:
    dom0, g2, _ = callers(sim)
    guest = client(sim, g2.dom)
    ref = guest.alloc_ref()
    page = bytes(range(256)) * 16
    g2.write(DATA_PFN << 12, page)
    guest.grant_access(ref, 0, DATA_PFN)
    area = sim.xen.domains[0].foreign
    before = list(free_slots(area))
    assert before and before[0] > 0  # dom0's daemons already hold the lowest slots
    out = map_ref(dom0, g2.dom.domid, ref, GNTMAP_host_map | GNTMAP_device_map)
    assert out["status"] == GNTST_okay
    slot = (out["host_addr"] - FOREIGN_GPA_BASE) >> 12
    mfn = g2.dom.phys.pfn_to_mfn(DATA_PFN)
    assert slot == before[0] and out["dev_bus_addr"] == mfn << 12  # the lowest free slot
    assert entry(sim, g2.dom, ref)["flags"] == GTF_permit_access | GTF_reading | GTF_writing
    held = sim.xen.domains[0].foreign.slots[slot]
    assert (held.mfn, held.domid, held.ref, held.readonly) == (mfn, g2.dom.domid, ref, False)
    # dom0 maps the foreign pfn with a 4 KiB PTE and sees (and changes) the guest's page.
    m = Dom0Mapping(dom0)
    rc, ptex = m.enter(out["host_addr"])
    assert rc == H_SUCCESS and m.pte_lo(ptex) >> 12 == mfn
    got = m.translate(out["host_addr"] + 0x123, ACCESS_READ)
    assert not isinstance(got, Fault) and got[0] == mfn << 12
    assert sim.machine.memory.read(got[0], 4096) == page
    wrote = m.translate(out["host_addr"], ACCESS_WRITE)
    assert not isinstance(wrote, Fault)
    sim.machine.memory.write(wrote[0], b"dom0 was here")
    assert g2.read(DATA_PFN << 12, 13) == b"dom0 was here"
    # Unmapping under a live PTE is refused, and says why; revoking reports busy.
    assert unmap(dom0, out) == GNTST_general_error
    df = sim.rec.to_dataframe().xen.wide()
    last = df[(df["kind"] == "gnttab.unmap") & (df["slot"] == slot)].iloc[-1]
    assert last["status"] == GNTST_general_error
    assert "still mapped by a page table entry" in last["text"]
    assert guest.end_access(ref) is False
    assert dom0.call(H_REMOVE, 0, ptex, 0) == H_SUCCESS
    assert dom0.core.gpr(5) >> 12 == foreign_pfn(slot)  # the PTE as dom0 wrote it
    assert isinstance(m.translate(out["host_addr"], ACCESS_READ), Fault)
    assert unmap(dom0, out) == GNTST_okay
    assert entry(sim, g2.dom, ref)["flags"] == GTF_permit_access
    assert sim.xen.domains[0].foreign.slots[slot] is None
    assert free_slots(area) == before  # the daemons' slots untouched
    assert dom0.call(H_ENTER, 0, 0, (1 << 7) | 1, out["host_addr"] | 2) == H_PARAMETER
    assert guest.end_access(ref) is True
    assert entry(sim, g2.dom, ref)["flags"] == 0
    guest.free_ref(ref)
    # The test's caller core runs at t=0, so pick its record by what it mapped, not by time.
    maps = df[(df["kind"] == "gnttab.map") & (df["dom"] == 0) & (df["slot"] == slot)]
    got = [(r.remote_dom, r.ref, r.slot, r.status, r.text) for r in maps.itertuples()]
    assert got == [(g2.dom.domid, ref, slot, GNTST_okay, "")]


def test_read_only_grant_maps_read_only_and_a_store_faults(sim: Simulation) -> None:
    dom0, g2, _ = callers(sim)
    guest = client(sim, g2.dom)
    ref = guest.alloc_ref()
    guest.grant_access(ref, 0, DATA_PFN + 1, readonly=True)
    assert map_ref(dom0, g2.dom.domid, ref)["status"] == GNTST_general_error  # write map
    assert entry(sim, g2.dom, ref)["flags"] & (GTF_reading | GTF_writing) == 0
    out = map_ref(dom0, g2.dom.domid, ref, GNTMAP_host_map | GNTMAP_readonly)
    assert out["status"] == GNTST_okay and out["dev_bus_addr"] == 0
    flags = entry(sim, g2.dom, ref)["flags"]
    assert flags & GTF_reading and not flags & GTF_writing
    m = Dom0Mapping(dom0)
    rc, ptex = m.enter(out["host_addr"], pp=2)  # asks for read/write
    assert rc == H_SUCCESS and m.pte_lo(ptex) & PTE_PP == 3
    assert not isinstance(m.translate(out["host_addr"], ACCESS_READ), Fault)
    store = m.translate(out["host_addr"], ACCESS_WRITE)
    assert isinstance(store, Fault) and store.vector == VEC_DSI
    assert store.dsisr & DSISR_PROTECTION
    # H_PROTECT cannot make it writable either.
    assert dom0.call(H_PROTECT, 2, ptex, 0) == H_SUCCESS
    assert m.pte_lo(ptex) & PTE_PP == 3
    assert dom0.call(H_REMOVE, 0, ptex, 0) == H_SUCCESS
    assert unmap(dom0, out) == GNTST_okay
    assert guest.end_access(ref) is True
    guest.free_ref(ref)


def test_map_errors(sim: Simulation) -> None:
    dom0, g2, g3 = callers(sim)
    guest = client(sim, g2.dom)
    ref = guest.alloc_ref()
    guest.grant_access(ref, g3.dom.domid, DATA_PFN + 2)  # granted to guest3, not dom0
    d2 = g2.dom.domid

    def status(**fields: int) -> int:
        return map_ref(dom0, **{"dom": d2, "ref": ref} | fields)["status"]

    assert status() == GNTST_general_error  # wrong grantee
    assert status(flags=0) == GNTST_bad_gntref
    assert status(dom=999) == GNTST_bad_domain
    assert status(ref=NR_GRANT_ENTRIES) == GNTST_bad_gntref
    guest.end_access(ref)
    guest.grant_access(ref, 0, DATA_PFN + 2)
    assert status(flags=GNTMAP_host_map | GNTMAP_application_map) == GNTST_general_error
    assert status(flags=GNTMAP_device_map) == GNTST_general_error  # no foreign slot
    assert status(host_addr=FOREIGN_GPA_BASE + 0x800) == GNTST_bad_virt_addr
    assert status(host_addr=FOREIGN_GPA_BASE + FOREIGN_SLOTS * 4096) == GNTST_bad_virt_addr
    assert status(host_addr=0x100000) == GNTST_bad_virt_addr
    bad = guest.alloc_ref()
    guest.grant_access(bad, 0, g2.dom.tot_pages + 100)  # a pfn guest2 does not own
    assert status(ref=bad) == GNTST_general_error
    # An explicit slot works once; the same slot again is in use.
    at = FOREIGN_GPA_BASE + 700 * 4096
    out = map_ref(dom0, d2, ref, host_addr=at)
    assert out["status"] == GNTST_okay and out["host_addr"] == at
    assert status(host_addr=at) == GNTST_general_error
    # No map/unmap/transfer from a domain without I/O privileges: -EPERM, op untouched.
    op = {"flags": GNTMAP_host_map, "ref": ref, "dom": d2}
    rc, [back] = gnttab(g3, GNTTABOP_map_grant_ref, GNTTAB_MAP_GRANT_REF, [op])
    assert rc == -EPERM and back == GNTTAB_MAP_GRANT_REF.unpack(GNTTAB_MAP_GRANT_REF.pack(**op))
    # Unmap errors: an unknown handle, a host_addr or dev_bus_addr not the handle's.
    assert unmap(dom0, out, handle=999) == GNTST_bad_handle
    assert unmap(dom0, out, host_addr=at + 4096) == GNTST_general_error
    assert unmap(dom0, out, dev_bus_addr=0x1000) == GNTST_general_error
    assert unmap(dom0, out) == GNTST_okay
    assert unmap(dom0, out) == GNTST_bad_handle  # only once
    df = sim.rec.to_dataframe().xen.wide()
    reasons = list(df[(df["kind"] == "gnttab.map") & (df["status"] != 0)]["text"])
    assert any("does not permit access to d0" in r for r in reasons)
    assert any("beyond the 2048 entries" in r for r in reasons)
    for r in (ref, bad):
        assert guest.end_access(r)
        guest.free_ref(r)
    assert gntst_name(GNTST_bad_virt_addr) == "bad_virt_addr"


def test_foreign_slots_run_out_after_1024_mappings(sim: Simulation) -> None:
    dom0, g2, _ = callers(sim)
    guest = client(sim, g2.dom)
    ref = guest.alloc_ref()
    guest.grant_access(ref, 0, DATA_PFN + 3, readonly=True)
    op = {"flags": GNTMAP_host_map | GNTMAP_readonly, "ref": ref, "dom": g2.dom.domid}
    area = sim.xen.domains[0].foreign
    assert area is not None
    daemons = list(area.slots)  # xenconsoled's and xenstored's mappings of every guest
    free = free_slots(area)
    assert 0 < area.in_use() == FOREIGN_SLOTS - len(free)
    mapped: list[dict[str, int]] = []
    for i in range(0, len(free), 128):  # 128 ops of 32 bytes fill one page
        n = min(128, len(free) - i)
        rc, outs = gnttab(dom0, GNTTABOP_map_grant_ref, GNTTAB_MAP_GRANT_REF, [op] * n)
        assert rc == 0 and {o["status"] for o in outs} == {GNTST_okay}
        mapped += outs
    got = sorted((m["host_addr"] - FOREIGN_GPA_BASE) >> 12 for m in mapped)
    assert got == free and len({m["handle"] for m in mapped}) == len(free)
    assert area.in_use() == FOREIGN_SLOTS
    assert map_ref(dom0, **op)["status"] == GNTST_no_device_space
    assert guest.end_access(ref) is False
    unmaps = [{"host_addr": m["host_addr"], "handle": m["handle"]} for m in mapped]
    for i in range(0, len(unmaps), 128):  # 24-byte ops: 128 fit a page
        batch = unmaps[i : i + 128]
        rc, outs = gnttab(dom0, GNTTABOP_unmap_grant_ref, GNTTAB_UNMAP_GRANT_REF, batch)
        assert rc == 0 and {o["status"] for o in outs} == {GNTST_okay}
        if i + 128 < len(unmaps):  # pinned while any mapping of the ref remains
            assert entry(sim, g2.dom, ref)["flags"] & GTF_reading
    assert entry(sim, g2.dom, ref)["flags"] == GTF_permit_access | GTF_readonly
    assert area.slots == daemons  # back to just the daemons' mappings
    assert guest.end_access(ref) is True
    guest.free_ref(ref)


# --- copy ------------------------------------------------------------------------------------
def test_copy_both_directions_and_its_errors(sim: Simulation) -> None:
    dom0, g2, g3 = callers(sim)
    d2, d3 = g2.dom.domid, g3.dom.domid
    guest = client(sim, g2.dom)
    rw, ro = guest.alloc_ref(), guest.alloc_ref()
    g2.write((DATA_PFN + 4) << 12, b"A" * 4096)
    g2.write((DATA_PFN + 5) << 12, b"R" * 4096)
    guest.grant_access(rw, d3, DATA_PFN + 4)
    guest.grant_access(ro, d3, DATA_PFN + 5, readonly=True)
    mine = DATA_PFN + 6
    g3.write(mine << 12, b"z" * 4096)
    self_dest = {"dest_gmfn": mine, "dest_domid": DOMID_SELF}
    self_src = {"source_gmfn": mine, "source_domid": DOMID_SELF}
    # guest3 reads from guest2's grant into its own page ...
    read_ro = {"source_ref": ro, "source_domid": d2, "flags": GNTCOPY_source_gref} | self_dest
    assert copy(g3, **read_ro, source_offset=100, dest_offset=8, len=50) == GNTST_okay
    assert g3.read(mine << 12, 64) == b"z" * 8 + b"R" * 50 + b"z" * 6
    # ... and writes from its own page into guest2's writable grant.
    g3.write(mine << 12, b"from guest3")
    into = {"dest_ref": rw, "dest_domid": d2, "flags": GNTCOPY_dest_gref} | self_src
    assert copy(g3, **into, dest_offset=4000, len=11) == GNTST_okay
    assert g2.read(((DATA_PFN + 4) << 12) + 3996, 16) == b"AAAAfrom guest3A"
    assert entry(sim, g2.dom, rw)["flags"] == GTF_permit_access  # no pin left behind
    into_ro = into | {"dest_ref": ro, "len": 4}
    assert copy(g3, **into_ro) == GNTST_general_error  # write into a read-only grant
    assert g2.read((DATA_PFN + 5) << 12, 4) == b"RRRR"
    assert copy(g3, **into_ro | {"dest_offset": 4093}) == GNTST_bad_copy_arg
    assert copy(g3, **into_ro | {"dest_ref": NR_GRANT_ENTRIES}) == GNTST_bad_gntref
    assert copy(g3, **into_ro | {"dest_domid": 99}) == GNTST_bad_domain
    # A pfn side must be the caller's own, unless the caller is privileged.
    steal = {"source_gmfn": DATA_PFN + 4, "source_domid": d2, "len": 4} | self_dest
    assert copy(g3, **steal) == GNTST_permission_denied
    not_mine = steal | {"source_domid": d3, "source_gmfn": 1 << 30}
    assert copy(g3, **not_mine) == GNTST_general_error  # its own id, but not its memory
    # guest2's grants are for guest3: dom0 cannot use them, but may copy any pfns.
    assert copy(dom0, **read_ro | {"source_ref": rw, "len": 4}) == GNTST_general_error
    assert copy(dom0, **steal | {"dest_domid": d3, "len": 8}) == GNTST_okay
    assert g3.read(mine << 12, 8) == b"AAAAAAAA"
    # Grants on both sides.
    both = {"source_ref": ro, "source_domid": d2, "dest_ref": rw, "dest_domid": d2}
    assert copy(g3, **both, len=3, flags=GNTCOPY_source_gref | GNTCOPY_dest_gref) == 0
    assert g2.read((DATA_PFN + 4) << 12, 4) == b"RRRA"
    df = sim.rec.to_dataframe().xen.wide()
    copies = df[(df["kind"] == "gnttab.copy") & (df["dom"] == d3)]
    assert list(copies["status"])[:3] == [GNTST_okay, GNTST_okay, GNTST_general_error]
    assert list(copies["bytes"])[:2] == [50, 11]
    assert "read-only grant" in copies["text"].iloc[2]
    for r in (rw, ro):
        assert guest.end_access(r)
        guest.free_ref(r)


# --- transfer and the p2m holes it needs -----------------------------------------------------
def test_physmap_holes_and_extras() -> None:
    rma, ext = 0x4000, [0x10000, 0x12000]
    dense = PhysMap(rma, 0x4000, ext[:1])
    grown = dense.with_extents(ext[1:])
    assert type(grown) is PhysMap and grown.end_pfn == 0x4000 + 2 * EXTENT_PAGES
    with pytest.raises(ValueError, match="RMA pages can never be given away"):
        dense.without_page(0x10)
    with pytest.raises(NotOwned):
        dense.without_page(0x9000)
    holed = grown.without_page(0x4005)
    assert isinstance(holed, SparsePhysMap) and holed.holes == {0x4005}
    assert holed.nr_pages == grown.nr_pages - 1 and holed.end_pfn == grown.end_pfn
    with pytest.raises(NotOwned, match="gave that page away"):
        holed.pfn_to_mfn(0x4005)
    assert not holed.owns_mfn(0x10005) and holed.owns_mfn(0x10006)
    with pytest.raises(NotOwned):
        holed.mfn_to_pfn(0x10005)
    assert not holed.contiguous(0x4000, EXTENT_PAGES) and holed.contiguous(0x5000, EXTENT_PAGES)
    runs = [(0x4000, 0x4000), (0x10000, 5), (0x10006, 0xFFA), (0x12000, 0x1000)]
    assert list(holed.mfns()) == runs
    # Receiving a foreign frame into the hole.
    filled = holed.with_page(0x4005, 0x90000)
    assert filled.pfn_to_mfn(0x4005) == 0x90000 and filled.mfn_to_pfn(0x90000) == 0x4005
    assert filled.nr_pages == grown.nr_pages and filled.owns_mfn(0x90000)
    assert list(filled.mfns()) == [*runs, (0x90000, 1)]
    assert filled.p2m_array()[0x4005] == 0x90000 and holed.p2m_array()[0x4005] == INVALID_MFN
    with pytest.raises(ValueError, match="not a hole"):
        filled.with_page(0x4005, 0x90001)
    with pytest.raises(ValueError, match="not a hole"):
        holed.with_page(0x4006, 0x90001)
    with pytest.raises(ValueError, match="already belongs"):
        holed.with_page(0x4005, 0x10006)
    # Extents added later keep holes and extras; a frame coming home closes its hole.
    more = filled.with_extents([0x20000])
    assert more.pfn_to_mfn(0x4005) == 0x90000 and more.pfn_to_mfn(0x6000) == 0x20000
    back = holed.with_page(0x4005, 0x10005)
    assert type(back) is PhysMap and list(back.mfns()) == list(grown.mfns())
    again = filled.without_page(0x4005)  # the received frame leaves: still a hole
    assert again.holes == {0x4005} and not again.extras and again.nr_pages == holed.nr_pages


class Dom0Port:
    """The toolstack's `HypercallPort` on a test caller of dom0."""

    def __init__(self, c: Caller) -> None:
        self.c = c

    def hypercall(self, r3: int, *args: int) -> int:
        return self.c.call(r3, *args)

    def write(self, gpa: int, data: bytes) -> None:
        self.c.write(gpa, data)

    def read(self, gpa: int, n: int) -> bytes:
        return self.c.read(gpa, n)

    def console(self, text: str) -> None:
        raise AssertionError(f"unexpected console output: {text}")


def balloon_out(sim: Simulation, dom: Domain, pfn: int) -> None:
    """Stand-in for XENMEM_decrease_reservation (memory_op lacks it): the domain gives
    `pfn` back to Xen, leaving a hole a transfer can fill. Its PTEs must be gone."""
    mfn = dom.phys.pfn_to_mfn(pfn)
    assert not large_ptes(sim, dom, mfn)
    dom.phys = dom.phys.without_page(pfn)
    sim.xen.alloc.free(mfn, 1)


def release_daemons(sim: Simulation, domid: int) -> None:
    """dom0's xenconsoled and xenstored let go of a guest (unmap its pages, close the
    channels), run by dom0's kernel on a test core, as `xl destroy` would have them."""
    consoled, store = sim.dom0.consoled, sim.dom0.store
    assert consoled is not None and store is not None
    core = Caller(sim, sim.xen.domains[0]).core
    area = sim.xen.domains[0].foreign
    assert area is not None
    assert {(s.domid, s.ref) for s in area.slots if s is not None} >= {(domid, 0), (domid, 1)}
    outer, sim.guests.current_core = sim.guests.current_core, core
    try:
        consoled.disconnect(core, domid)
        store.release(core, domid)
    finally:
        sim.guests.current_core = outer
    assert not any(s is not None and s.domid == domid for s in area.slots)


def test_transfer_refusals_then_a_page_changes_owner(sim: Simulation) -> None:
    xen = sim.xen
    dom0, g2, _ = callers(sim)
    g1 = Caller(sim, domain_named(sim, "guest1"))  # 64 MiB RMA + 4 extents
    d0, d1 = dom0.dom, g1.dom
    donor_pfn = (d0.rma_size >> 12) + 5  # in dom0's first extent
    mfn = d0.phys.pfn_to_mfn(donor_pfn)
    sim.machine.memory.write(mfn << 12, b"a page that moves")
    # The receiver gives a page away first, then accepts one from dom0 into that hole.
    hole = (d1.rma_size >> 12) + EXTENT_PAGES + 7  # in guest1's second extent
    for ptex, hi in large_ptes(sim, d1, d1.phys.pfn_to_mfn(hole)):
        assert g1.call(H_REMOVE, H_AVPN, ptex, hi & ~0x7F) == H_SUCCESS
    balloon_out(sim, d1, hole)
    receiver = client(sim, d1)
    ref = receiver.alloc_ref()
    receiver.grant_accept_transfer(ref, 0, hole)
    assert receiver.transfer_completed(ref) is None

    def transfer(c: Caller = dom0, **fields: int) -> int:
        op = {"mfn": donor_pfn, "domid": d1.domid, "ref": ref} | fields
        rc, [out] = gnttab(c, GNTTABOP_transfer, GNTTAB_TRANSFER, [op])
        assert rc == 0
        return signed16(out["status"])

    rc, _ = gnttab(g2, GNTTABOP_transfer, GNTTAB_TRANSFER, [{"mfn": DATA_PFN, "domid": 0}])
    assert rc == -EPERM  # a domU cannot give pages away by transfer
    assert transfer(mfn=5) == GNTST_bad_page  # an RMA page
    assert transfer() == GNTST_bad_page  # still under dom0's 16 MiB linear-map PTE
    df = sim.rec.to_dataframe().xen.wide()
    reasons = list(df[df["kind"] == "gnttab.transfer"]["text"])
    assert "RMA pages can never be given away" in reasons[0]
    assert "16 MiB page table entry" in reasons[1] and "balloon" in reasons[1]
    covering = large_ptes(sim, d0, mfn)
    assert len(covering) == 1
    assert dom0.call(H_REMOVE, H_AVPN, covering[0][0], covering[0][1] & ~0x7F) == 0
    assert transfer(mfn=d0.phys.end_pfn + 3) == GNTST_bad_page  # not dom0's memory
    assert transfer(domid=55) == GNTST_bad_domain
    assert transfer(ref=ref + 1) == GNTST_general_error  # an entry that accepts nothing
    receiver.end_access(ref)
    receiver.grant_accept_transfer(ref, 0, hole + 1)  # not a hole
    assert transfer() == GNTST_general_error
    receiver.end_access(ref)
    receiver.grant_accept_transfer(ref, 0, hole)
    tot0, tot1 = d0.tot_pages, d1.tot_pages
    assert transfer() == GNTST_okay
    assert d0.tot_pages == tot0 - 1 and d1.tot_pages == tot1 + 1
    with pytest.raises(NotOwned):
        d0.phys.pfn_to_mfn(donor_pfn)
    assert d1.phys.pfn_to_mfn(hole) == mfn and d1.phys.mfn_to_pfn(mfn) == hole
    assert g1.read(hole << 12, 17) == b"a page that moves"
    e = entry(sim, d1, ref)
    assert e["flags"] == GTF_accept_transfer | GTF_transfer_committed | GTF_transfer_completed
    assert e["frame"] == hole  # auto-translated: the entry keeps the receiver's pfn
    assert receiver.transfer_completed(ref) == hole and entry(sim, d1, ref)["flags"] == 0
    assert transfer() == GNTST_bad_page  # dom0 no longer has that pfn
    # dom0's hypercalls still find their arguments (its xencomm follows the new p2m).
    q = one(dom0, GNTTABOP_query_size, GNTTAB_QUERY_SIZE, dom=DOMID_SELF)
    assert q["status"] == GNTST_okay
    # Destroying the receiver frees exactly what it holds now, the received frame included.
    free = xen.alloc.free_bytes
    held = (d1.tot_pages << 12) + d1.htab_bytes + NR_GRANT_FRAMES * 4096
    ts = Toolstack(Dom0Port(dom0), sim.kernel, 1, 1)
    # Paused first, as xend does, so its VCPU has stopped when destroydomain comes (a
    # shutdown of a running guest would let xend, told by VIRQ_DOM_EXC, destroy it itself).
    assert ts.domctl(XEN_DOMCTL_pausedomain, d1.domid)[0] == 0
    sim.env.run(until=sim.env.now + 1_000_000)
    rc, _ = ts.domctl(XEN_DOMCTL_destroydomain, d1.domid)
    # dom0's xenconsoled and xenstored still map its console and store pages: it is dying,
    # holding just those two frames (and its grant table); everything else is free.
    assert rc == 0 and xen.domains[d1.domid] is d1 and d1.state == DomainState.DYING
    assert d1.tot_pages == 2
    assert xen.alloc.free_bytes == free + held - (2 + NR_GRANT_FRAMES) * 4096
    grant_frames = list(d1.grant_frames)
    release_daemons(sim, d1.domid)
    assert d1.domid not in xen.domains and xen.alloc.free_bytes == free + held
    for f in grant_frames:  # scrubbed on the way back
        assert xen.memory.read(f << 12, 4096) == bytes(4096)


def test_transfer_of_a_page_mapped_in_a_foreign_slot_is_refused(sim: Simulation) -> None:
    dom0, _, _ = callers(sim)
    d0 = dom0.dom
    pfn = (d0.rma_size >> 12) + 9
    ((ptex, hi),) = large_ptes(sim, d0, d0.phys.pfn_to_mfn(pfn))
    assert dom0.call(H_REMOVE, H_AVPN, ptex, hi & ~0x7F) == H_SUCCESS

    def refusal() -> str:
        rc, [op] = gnttab(dom0, GNTTABOP_transfer, GNTTAB_TRANSFER, [{"mfn": pfn, "domid": 1}])
        assert rc == 0 and signed16(op["status"]) == GNTST_bad_page
        df = sim.rec.to_dataframe().xen.wide()
        return df[df["kind"] == "gnttab.transfer"]["text"].iloc[-1]

    m = Dom0Mapping(dom0)
    rc, small = m.enter(pfn << 12)  # a 4 KiB PTE of its own still maps the page
    assert rc == H_SUCCESS
    assert "4 KiB page table entry" in refusal()
    assert dom0.call(H_REMOVE, 0, small, 0) == H_SUCCESS
    own = client(sim, d0)
    ref = own.alloc_ref()
    own.grant_access(ref, 0, pfn)  # dom0 maps its own page into its foreign area
    assert map_ref(dom0, 0, ref)["status"] == GNTST_okay
    assert "foreign slot" in refusal()


def test_h_enter_of_foreign_pfns(sim: Simulation) -> None:
    dom0, g2, _ = callers(sim)
    hi = (0x4321 << 7) | PTE_V
    unmapped = foreign_pfn(900) << 12
    assert dom0.call(H_ENTER, 0, 64, hi, unmapped | 2) == H_PARAMETER
    assert g2.call(H_ENTER, 0, 64, hi, foreign_pfn(0) << 12 | 2) == H_PARAMETER
    guest = client(sim, g2.dom)
    ref = guest.alloc_ref()
    guest.grant_access(ref, 0, DATA_PFN + 7)
    out = map_ref(dom0, g2.dom.domid, ref)
    assert out["status"] == GNTST_okay
    assert dom0.call(H_ENTER, 0, 64, hi | PTE_L, out["host_addr"] | 2) == H_PARAMETER
    assert unmap(dom0, out) == GNTST_okay
    assert guest.end_access(ref)
    guest.free_ref(ref)
