"""The 2-4 GiB I/O hole is a hole: no domain gets a frame there, and dom0's IO class
(mfn = pfn, privileged only) reaches I/O space, never RAM (XEN-PPC-FACTS.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

import analysis  # noqa: F401  (registers DataFrame.xen)
from framework.errors import NotOwned
from framework.scenario import parse_scenario
from framework.simulation import Simulation
from framework.xen.domain import Domain
from framework.xen.mm import FrameAllocator, PhysMap
from framework.xen.p2m import PfnClass, pfn_to_mfn
from tests.xen.xenharness import domain_named

ROOT = Path(__file__).resolve().parents[2]
GiB = 1 << 30
MiB = 1 << 20
HOLE_PFNS = range((2 * GiB) >> 12, (4 * GiB) >> 12)  # machine frames 0x80000..0xfffff


@pytest.fixture(scope="module")
def hole_machine() -> Simulation:
    """scenarios/io-hole.yaml (a 4 GiB machine, a 2 GiB guest and a 1 GiB-RMA guest), 30 ms."""
    text = (ROOT / "scenarios" / "io-hole.yaml").read_text()
    sim = Simulation(parse_scenario(text.replace("duration: 100ms", "duration: 30ms"), "hole"))
    sim.run()
    return sim


def _touches_hole(mfn: int, count: int) -> bool:
    return mfn < HOLE_PFNS.stop and mfn + count > HOLE_PFNS.start


def test_a_4gib_machine_gives_no_domain_a_frame_in_the_hole(hole_machine: Simulation) -> None:
    sim = hole_machine
    df = sim.rec.to_dataframe().xen.wide()
    assert (df["kind"] == "mem.fail").sum() == 0
    allocs = df[df["kind"] == "mem.alloc"]
    runs = [(int(m), int(c)) for m, c in zip(allocs["mfn"], allocs["count"], strict=True)]
    assert len(runs) > 100  # dom0 and both guests' RMAs, extents and grant frames
    assert not [hex(m) for m, c in runs if _touches_hole(m, c)]
    # Xen's own p2m of each domain says the same, frame by frame.
    for dom in sim.xen.domains.values():
        assert dom.phys is not None
        p2m = dom.phys.p2m_array()
        assert not [pfn for pfn, mfn in enumerate(p2m) if mfn in HOLE_PFNS], dom.name
    big = domain_named(sim, "big")
    assert big.phys is not None
    top = max(m + c for m, c in big.phys.mfns())
    assert top << 12 > 4 * GiB  # the 2 GiB guest goes on at 4 GiB, past the hole
    rma1g = domain_named(sim, "rma1g")
    assert rma1g.rma_mfn << 12 == 5 * GiB  # [1, 2) GiB was taken: the next aligned GiB
    # Both guests ran: the compute guest got its CPU, the 1 GiB-RMA guest took ticks.
    ran = df[df["kind"] == "sched.switch"]["dom"].unique()
    assert {big.domid, rma1g.domid} <= {int(d) for d in ran}


def test_dom0s_io_class_reaches_no_domains_memory(hole_machine: Simulation) -> None:
    sim = hole_machine
    dom0 = sim.xen.domains[0]
    others = [d for d in sim.xen.domains.values() if d.phys is not None]
    for pfn in range(HOLE_PFNS.start, HOLE_PFNS.stop, 0x1000):  # every 16 MiB of the hole
        tr = pfn_to_mfn(dom0, pfn, sim.xen.alloc)
        assert tr.cls == PfnClass.IO and tr.mfn == pfn
        assert not sim.machine.memory.is_ram(tr.mfn << 12, 4096)
        assert not [d.name for d in others if d.phys is not None and d.phys.owns_mfn(tr.mfn)]


def test_an_io_class_pfn_that_is_ram_is_refused() -> None:
    """On a board whose RAM were flat across 2-4 GiB, a guest's RMA could sit in the hole's
    range; dom0 naming it through the IO class (mfn = pfn) must still not get it."""
    flat = FrameAllocator([(0, 4 * GiB)])
    rma_mfn = flat.alloc_aligned(2 * GiB, 2 * GiB, "RMA of a 2 GiB guest")
    assert rma_mfn << 12 == 2 * GiB
    guest = Domain(domid=1, name="guest", privileged=False)
    guest.phys = PhysMap(rma_mfn, (2 * GiB) >> 12, [])
    dom0 = Domain(domid=0, name="Domain-0", privileged=True)
    with pytest.raises(NotOwned, match="IO-class pfn 0x80000 is a RAM frame"):
        pfn_to_mfn(dom0, rma_mfn, flat)
    with pytest.raises(NotOwned, match="RAM frame"):
        pfn_to_mfn(dom0, rma_mfn + 0x3FFD, flat)  # the guest's xenstore page, say
    # Where the hole really is one, the same pfn is I/O space.
    holed = FrameAllocator([(0, 2 * GiB), (4 * GiB, 2 * GiB)])
    assert pfn_to_mfn(dom0, rma_mfn, holed).cls == PfnClass.IO
