"""The guest kernel's grant table client, used the way a kernel uses it: the table is
found with GNTTABOP_setup_table, mapped with 4 KiB PTEs (H_ENTER of GNTTAB pfns) and
reached through the VCPU's own translation."""

from __future__ import annotations

import pytest

from framework.errors import GrantRefsExhausted, KernelFault
from framework.guest.grants import NR_RESERVED_ENTRIES, GrantTableClient
from framework.guest.kernel import GuestKernel
from framework.guest.kmem import KernelMemory
from framework.hw970.core import Core
from framework.simulation import Simulation
from framework.xen.domain import Domain
from framework.xen.grant_table import entry_maddr
from framework.xen.public.arch_powerpc import NR_GRANT_FRAMES
from framework.xen.public.grant_table import (
    GNTTAB_MAP_GRANT_REF,
    GNTTAB_SETUP_TABLE,
    GNTTAB_UNMAP_GRANT_REF,
    GRANT_ENTRY,
    NR_GRANT_ENTRIES,
    GNTMAP_host_map,
    GNTST_okay,
    GNTTABOP_map_grant_ref,
    GNTTABOP_setup_table,
    GNTTABOP_unmap_grant_ref,
    GTF_accept_transfer,
    GTF_permit_access,
    GTF_reading,
    GTF_readonly,
    GTF_writing,
)
from framework.xen.public.xen import DOMID_SELF, HYPERVISOR_grant_table_op
from framework.xen.public.xencomm import build_descriptor
from tests.xen.xenharness import Caller, domain_named, quickstart

FRAME_LIST = 0x3B000  # guest-physical, free in every quick-start domain's RMA
FRAME_LIST_DESC = 0x3C000
GRANTED_PFN = 0x2100


@pytest.fixture
def sim() -> Simulation:
    s = quickstart("2ms")
    s.run()
    return s


def kernel_of(sim: Simulation, dom: Domain) -> tuple[GuestKernel, Core]:
    """The domain's kernel and a core running its VCPU 0 (for natives' hypercalls)."""
    return sim.guests.kernels[dom.domid], Caller(sim, dom).core


def setup_table(k: GuestKernel, core: Core) -> list[int]:
    """GNTTABOP_setup_table for our own table: the pfns of its frames."""
    mem = KernelMemory(core)
    mem.write(FRAME_LIST_DESC, build_descriptor([FRAME_LIST]))
    op = {"dom": DOMID_SELF, "nr_frames": NR_GRANT_FRAMES, "frame_list": FRAME_LIST_DESC}
    rc, [out] = k.multi_op(
        core, HYPERVISOR_grant_table_op, GNTTABOP_setup_table, GNTTAB_SETUP_TABLE, [op]
    )
    assert rc == 0 and out["status"] == GNTST_okay
    raw = mem.read(FRAME_LIST, 8 * NR_GRANT_FRAMES)
    return [int.from_bytes(raw[8 * i : 8 * i + 8], "big") for i in range(NR_GRANT_FRAMES)]


@pytest.fixture
def guest2(sim: Simulation) -> tuple[GrantTableClient, Domain, Core]:
    """guest2's kernel with its grant table mapped at KERNEL_BASE + GNTTAB gpa."""
    dom = domain_named(sim, "guest2")
    k, core = kernel_of(sim, dom)
    pfns = setup_table(k, core)
    table = pfns[0] << 12
    # The kernel mapped its frames at start-up; the page after them it did not map, and
    # nothing bypasses translation.
    assert k.grants is not None and k.grants.table_gpa == table
    KernelMemory(core).read(table, 8)
    with pytest.raises(KernelFault):
        KernelMemory(core).read((pfns[-1] + 1) << 12, 8)
    return GrantTableClient(KernelMemory(core), table), dom, core


def xen_entry(sim: Simulation, dom: Domain, ref: int) -> dict[str, int]:
    return GRANT_ENTRY.unpack(sim.machine.memory.read(entry_maddr(dom, ref), 8))


def test_the_kernel_sees_its_seeded_table_through_its_own_mapping(
    sim: Simulation, guest2: tuple[GrantTableClient, Domain, Core]
) -> None:
    client, dom, _ = guest2
    assert client.table_gpa == sim.xen.alloc.max_page << 12
    pages = dom.rma_size >> 12
    # Console and xenstore pages, granted to dom0 and mapped there by xenconsoled and
    # xenstored: Xen keeps GTF_reading|GTF_writing set while they are mapped.
    mapped = GTF_permit_access | GTF_reading | GTF_writing
    assert client.entry(0) == (mapped, 0, pages - 2)
    assert client.entry(1) == (mapped, 0, pages - 3)
    last = NR_GRANT_ENTRIES - 1  # in the fourth frame
    client.grant_access(last, 3, 0x1234, readonly=True)
    assert xen_entry(sim, dom, last) == {
        "flags": GTF_permit_access | GTF_readonly,
        "domid": 3,
        "frame": 0x1234,
    }
    assert client.end_access(last) is True
    assert xen_entry(sim, dom, last)["flags"] == 0


def test_ref_allocator_is_lowest_first_and_says_when_it_runs_out(
    guest2: tuple[GrantTableClient, Domain, Core],
) -> None:
    mem = guest2[0].mem
    client = GrantTableClient(mem, guest2[0].table_gpa)
    assert [client.alloc_ref() for _ in range(3)] == [2, 3, 4]
    client.free_ref(3)
    client.free_ref(2)
    assert client.alloc_ref() == 2 and client.alloc_ref() == 3 and client.alloc_ref() == 5
    with pytest.raises(ValueError, match="not allocated"):
        client.free_ref(0)  # reserved refs are never handed out
    with pytest.raises(ValueError, match="not allocated"):
        client.free_ref(6)
    left = NR_GRANT_ENTRIES - NR_RESERVED_ENTRIES - 4
    refs = [client.alloc_ref() for _ in range(left)]
    assert refs[-1] == NR_GRANT_ENTRIES - 1 and len(set(refs)) == left
    with pytest.raises(GrantRefsExhausted, match="all 2046 grant references are in use"):
        client.alloc_ref()
    with pytest.raises(ValueError, match="outside the table"):
        client.entry(NR_GRANT_ENTRIES)
    with pytest.raises(ValueError, match="not page aligned"):
        GrantTableClient(mem, client.table_gpa + 8)


def test_revoking_a_mapped_grant_reports_busy(
    sim: Simulation, guest2: tuple[GrantTableClient, Domain, Core]
) -> None:
    client, dom, _ = guest2
    k0, core0 = kernel_of(sim, sim.xen.domains[0])
    ref = client.alloc_ref()
    client.grant_access(ref, 0, GRANTED_PFN)
    op = {"flags": GNTMAP_host_map, "ref": ref, "dom": dom.domid}
    rc, [mapped] = k0.multi_op(
        core0, HYPERVISOR_grant_table_op, GNTTABOP_map_grant_ref, GNTTAB_MAP_GRANT_REF, [op]
    )
    assert rc == 0 and mapped["status"] == GNTST_okay
    busy = client.entry(ref)
    assert busy == (GTF_permit_access | GTF_reading | GTF_writing, 0, GRANTED_PFN)
    assert client.end_access(ref) is False
    assert client.entry(ref) == busy  # left alone
    with pytest.raises(ValueError, match="still in use"):
        client.grant_access(ref, 0, GRANTED_PFN + 1)
    op = {"host_addr": mapped["host_addr"], "handle": mapped["handle"]}
    rc, [out] = k0.multi_op(
        core0,
        HYPERVISOR_grant_table_op,
        GNTTABOP_unmap_grant_ref,
        GNTTAB_UNMAP_GRANT_REF,
        [op],
    )
    assert rc == 0 and out["status"] == GNTST_okay
    assert client.entry(ref).flags == GTF_permit_access
    assert client.end_access(ref) is True
    assert client.entry(ref).flags == 0
    client.free_ref(ref)


def test_accepting_a_transfer_before_it_completes(
    sim: Simulation, guest2: tuple[GrantTableClient, Domain, Core]
) -> None:
    client, dom, _ = guest2
    ref = client.alloc_ref()
    client.grant_accept_transfer(ref, 0, 0x3456)
    assert xen_entry(sim, dom, ref) == {"flags": GTF_accept_transfer, "domid": 0, "frame": 0x3456}
    assert client.transfer_completed(ref) is None  # Xen has not moved a page yet
    assert client.entry(ref).flags == GTF_accept_transfer  # and the entry stays armed
    assert client.end_access(ref) is True
    client.free_ref(ref)
