"""Hostile hypercall arguments get Xen's errno, never a Python exception out of Xen.

Each case was once a traceback that ended the whole run (issue 14); each is made here as a
real hypercall through `sc 1`'s entry, with the argument bytes in the caller's memory.
"""

from __future__ import annotations

from framework.simulation import Simulation
from framework.xen.public.domctl import (
    DOMCTL,
    XEN_DOMCTL_createdomain,
    XEN_DOMCTL_max_mem,
    XEN_DOMCTL_real_mode_area,
    XEN_DOMCTL_xen970_copy_to_domain,
)
from framework.xen.public.errno import EINVAL, ENOMEM
from framework.xen.public.memory import MEMORY_RESERVATION, XENMEM_populate_physmap
from framework.xen.public.xen import HYPERVISOR_domctl, HYPERVISOR_memory_op, xen_mark
from framework.xen.public.xencomm import build_descriptor
from tests.xen.xenharness import ARG, DESC, Caller, domain_named, quickstart

DOMID_SELF = 0x7FF0  # xen/include/public/xen.h
DOMID_FIRST_RESERVED = 0x7FF0  # xen/include/public/xen.h
MEMOP_EXTENT_SHIFT = 4  # xen/include/public/memory.h (XENMEMF: start_extent above it)
INTERFACE_VERSION = 0x00000004  # XEN_DOMCTL_INTERFACE_VERSION of the 3.0.4/3.1 headers


def booted() -> Simulation:
    sim = quickstart("5ms")
    sim.run()
    return sim


def domctl(c: Caller, cmd: int, domain: int, **fields: int) -> tuple[int, dict[str, int]]:
    """XEN_DOMCTL_`cmd` from `c`'s domain, the struct passed through a xencomm descriptor."""
    c.write(ARG, DOMCTL.pack(cmd=cmd, interface_version=INTERFACE_VERSION, domain=domain, **fields))
    c.write(DESC, build_descriptor([ARG]))
    rc = c.call(xen_mark(HYPERVISOR_domctl), DESC)
    return rc, DOMCTL.unpack(c.read(ARG, DOMCTL.size))


def test_forged_memory_op_continuation_from_a_domu_changes_nothing() -> None:
    sim = booted()
    guest = domain_named(sim, "guest1")
    c = Caller(sim, guest)
    pages = guest.tot_pages
    c.write(ARG, MEMORY_RESERVATION.pack(nr_extents=2, extent_order=12, domid=DOMID_SELF))
    c.write(DESC, build_descriptor([ARG]))
    cmd = XENMEM_populate_physmap | (100 << MEMOP_EXTENT_SHIFT)  # start 100 of 2 extents
    rc = c.call(xen_mark(HYPERVISOR_memory_op), cmd, DESC)
    assert rc == 100  # Xen returns start_extent when it lies beyond nr_extents
    assert guest.tot_pages == pages


def test_real_mode_area_on_a_domain_that_has_one_is_einval() -> None:
    sim = booted()
    dom0 = Caller(sim, sim.xen.domains[0])
    guest = domain_named(sim, "guest1")
    rma = guest.rma_mfn
    rc, _ = domctl(dom0, XEN_DOMCTL_real_mode_area, guest.domid, rma_log=26)
    assert (rc, guest.rma_mfn) == (-EINVAL, rma)  # allocate_rma: d->arch.rma_page is set


def test_max_mem_below_what_the_domain_holds_is_einval() -> None:
    sim = booted()
    dom0 = Caller(sim, sim.xen.domains[0])
    guest = domain_named(sim, "guest1")
    max_pages = guest.max_pages
    rc, _ = domctl(dom0, XEN_DOMCTL_max_mem, guest.domid, max_memkb=3)
    assert (rc, guest.max_pages) == (-EINVAL, max_pages)  # new_max < tot_pages
    rc, out = domctl(dom0, XEN_DOMCTL_createdomain, 0)
    rc, _ = domctl(dom0, XEN_DOMCTL_max_mem, out["domain"], max_memkb=3)
    assert (rc, sim.xen.domains[out["domain"]].max_pages) == (0, 0)  # 0 pages of 0: allowed


def test_copy_into_a_domain_without_memory_is_einval() -> None:
    sim = booted()
    dom0 = Caller(sim, sim.xen.domains[0])
    rc, out = domctl(dom0, XEN_DOMCTL_createdomain, 0)
    assert rc == 0
    rc, _ = domctl(
        dom0,
        XEN_DOMCTL_xen970_copy_to_domain,
        out["domain"],
        copy_dst_gpa=0,
        copy_nbytes=16,
        copy_src=DESC,
    )
    assert rc == -EINVAL  # no RMA yet: nothing to copy into


def test_createdomain_never_hands_out_reserved_ids_and_wraps_like_xen() -> None:
    sim = booted()
    dom0 = Caller(sim, sim.xen.domains[0])
    used = set(sim.xen.domains)
    rc, out = domctl(dom0, XEN_DOMCTL_createdomain, 0)
    first = out["domain"]
    assert rc == 0 and first == max(used) + 1
    rc, _ = domctl(dom0, XEN_DOMCTL_createdomain, first)  # asking for an id in use
    assert rc == -EINVAL
    rc, out = domctl(dom0, XEN_DOMCTL_createdomain, 0x7FEF)  # the last ordinary id, asked for
    assert (rc, out["domain"]) == (0, 0x7FEF)
    given = [first, 0x7FEF]
    while True:  # DOMID_SELF asked for means "any": the rover walks, wrapping at 0x7FF0
        rc, out = domctl(dom0, XEN_DOMCTL_createdomain, DOMID_SELF)
        if rc != 0:
            break
        given.append(out["domain"])
    assert rc == -ENOMEM  # every id below DOMID_FIRST_RESERVED is taken
    assert max(given) == 0x7FEF and 0 not in given
    assert len(given) == len(set(given)) == DOMID_FIRST_RESERVED - len(used)
    assert all(d < DOMID_FIRST_RESERVED for d in sim.xen.domains)
