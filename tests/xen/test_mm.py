"""Machine frame allocator, per-domain p2m and the sizing rules of framework.xen.mm."""

from __future__ import annotations

import pytest

from framework.errors import AllocError, NotOwned
from framework.hw970.memory import PAGE_SHIFT, memory_ranges
from framework.hw970.mmu import sdr1_encode
from framework.xen.mm import FrameAllocator, PhysMap, dom0_memory_default
from framework.xen.public.arch_powerpc import (
    EXTENT_BYTES,
    EXTENT_ORDER,
    EXTENT_PAGES,
    htab_bytes_for,
    rma_layout,
)

MiB = 1 << 20
GiB = 1 << 30
RESERVED_MFN = (64 * MiB) >> PAGE_SHIFT


def mfn(addr: int) -> int:
    """Machine frame number of a byte address, to keep the expectations readable."""
    return addr >> PAGE_SHIFT


def test_constants() -> None:
    assert PAGE_SHIFT == 12
    assert EXTENT_ORDER == 12
    assert EXTENT_BYTES == 16 * MiB == EXTENT_PAGES << PAGE_SHIFT


def test_fresh_allocator_frees_everything_above_xen() -> None:
    fa = FrameAllocator([(0, 1 * GiB)])
    assert fa.free_bytes == 1 * GiB - 64 * MiB
    assert fa.free_ranges() == [(RESERVED_MFN, mfn(1 * GiB) - RESERVED_MFN)]


def test_rma_allocation_is_naturally_aligned() -> None:
    fa = FrameAllocator([(0, 1 * GiB)])
    rma64 = fa.alloc_aligned(64 * MiB, 64 * MiB, "dom0 RMA")
    assert rma64 == mfn(64 * MiB)  # first fit right above Xen's 64 MiB
    rma256 = fa.alloc_aligned(256 * MiB, 256 * MiB, "domU RMA")
    assert rma256 == mfn(256 * MiB)  # 128 MiB is free but not 256 MiB aligned
    assert (rma256 << PAGE_SHIFT) % (256 * MiB) == 0
    assert fa.free_bytes == 1 * GiB - 64 * MiB - 64 * MiB - 256 * MiB
    # The 128..256 MiB gap stays free for later, smaller requests.
    assert fa.alloc_aligned(128 * MiB, 128 * MiB, "third RMA") == mfn(128 * MiB)


def test_fragmented_memory_has_no_aligned_block() -> None:
    fa = FrameAllocator([(0, 1 * GiB)])
    extents = fa.alloc_extents(1 * GiB - 64 * MiB, 16 * MiB, "everything")
    assert fa.free_bytes == 0
    keep_free = [(64, 192), (256, 384), (576, 704), (832, 960)]  # MiB ranges, 512 MiB
    for base in extents:
        addr = base << PAGE_SHIFT
        if any(lo * MiB <= addr < hi * MiB for lo, hi in keep_free):
            fa.free(base, EXTENT_PAGES)
    assert fa.free_bytes == 512 * MiB
    assert fa.largest_aligned_free(256 * MiB) == 128 * MiB
    before = fa.free_ranges()
    with pytest.raises(AllocError) as exc:
        fa.alloc_aligned(256 * MiB, 256 * MiB, "the RMA")
    assert str(exc.value) == (
        "no naturally aligned 256MiB block free for the RMA: 512MiB free in total, "
        "largest aligned free block 128MiB"
    )
    assert fa.free_ranges() == before
    # A smaller RMA still fits one of the holes.
    assert fa.alloc_aligned(128 * MiB, 128 * MiB, "small RMA") == mfn(256 * MiB)


def test_out_of_memory_message() -> None:
    fa = FrameAllocator([(0, 1 * GiB)])
    fa.alloc_extents(1 * GiB - 64 * MiB - 32 * MiB, 16 * MiB, "filler")
    assert fa.free_bytes == 32 * MiB
    with pytest.raises(AllocError, match=r"^out of memory for guest: need 48MiB, 32MiB free$"):
        fa.alloc_aligned(48 * MiB, 16 * MiB, "guest")
    with pytest.raises(AllocError, match=r"need 48MiB, 32MiB free"):
        fa.alloc_extents(48 * MiB, 16 * MiB, "guest")
    assert fa.free_bytes == 32 * MiB


def test_alloc_free_cycles_restore_exactly() -> None:
    fa = FrameAllocator([(0, 1 * GiB)])
    initial = fa.free_bytes
    for _ in range(3):
        held: list[tuple[int, int]] = []
        held.append((fa.alloc_aligned(64 * MiB, 64 * MiB, "rma a"), mfn(64 * MiB)))
        held += [(e, EXTENT_PAGES) for e in fa.alloc_extents(48 * MiB, 16 * MiB, "ext a")]
        held.append((fa.alloc_aligned(256 * 1024, 256 * 1024, "htab a"), mfn(256 * 1024)))
        held.append((fa.alloc_aligned(128 * MiB, 128 * MiB, "rma b"), mfn(128 * MiB)))
        held.append((fa.alloc_aligned(4096, 4096, "page"), 1))
        held += [(e, EXTENT_PAGES) for e in fa.alloc_extents(32 * MiB, 16 * MiB, "ext b")]
        used = sum(count for _, count in held) << PAGE_SHIFT
        assert fa.free_bytes == initial - used
        # Free in an interleaved order so merging on both sides gets exercised.
        for first, count in held[::2] + held[1::2]:
            fa.free(first, count)
        assert fa.free_bytes == initial
        assert fa.free_ranges() == [(RESERVED_MFN, mfn(1 * GiB) - RESERVED_MFN)]


def test_free_refuses_double_free_and_foreign_frames() -> None:
    fa = FrameAllocator([(0, 1 * GiB)])
    base = fa.alloc_aligned(16 * MiB, 16 * MiB, "x")
    fa.free(base, EXTENT_PAGES)
    with pytest.raises(ValueError, match="double free"):
        fa.free(base, EXTENT_PAGES)
    other = fa.alloc_aligned(16 * MiB, 16 * MiB, "y")
    with pytest.raises(ValueError, match="double free"):
        fa.free(other, 2 * EXTENT_PAGES)  # runs into the free range after it
    with pytest.raises(ValueError, match="outside allocatable"):
        fa.free(0, 1)  # Xen's own frames
    with pytest.raises(ValueError, match="outside allocatable"):
        fa.free(mfn(1 * GiB) - 1, 2)
    with pytest.raises(ValueError, match="positive"):
        fa.free(other, 0)


def test_every_freed_range_is_scrubbed_and_only_once_the_free_is_accepted() -> None:
    """Xen scrubs what a domain gives back: each accepted free is cleared through `scrub`
    (byte address, length) before anyone can be given it; a refused one clears nothing."""
    cleared: list[tuple[int, int]] = []
    fa = FrameAllocator([(0, 1 * GiB)], scrub=lambda addr, n: cleared.append((addr, n)))
    base = fa.alloc_aligned(16 * MiB, 16 * MiB, "x")
    assert cleared == []
    fa.free(base + 3, 5)
    fa.free(base, 3)
    assert cleared == [((base + 3) << PAGE_SHIFT, 5 << PAGE_SHIFT), (base << PAGE_SHIFT, 3 << 12)]
    with pytest.raises(ValueError, match="double free"):
        fa.free(base, 1)
    assert len(cleared) == 2


def test_extents_are_all_or_nothing() -> None:
    fa = FrameAllocator([(0, 1 * GiB)])
    extents = fa.alloc_extents(1 * GiB - 64 * MiB, 16 * MiB, "everything")
    assert all(e % EXTENT_PAGES == 0 for e in extents)
    assert extents == sorted(extents) and len(extents) == 60
    # Free half of four extents and one whole one: 48 MiB free, one whole extent.
    for e in extents[1:5]:
        fa.free(e + EXTENT_PAGES // 2, EXTENT_PAGES // 2)
    fa.free(extents[10], EXTENT_PAGES)
    before = fa.free_ranges()
    with pytest.raises(AllocError, match=r"need 2, found 1 \(48MiB free in total\)"):
        fa.alloc_extents(32 * MiB, 16 * MiB, "domU memory")
    assert fa.free_ranges() == before and fa.free_bytes == 48 * MiB
    assert fa.alloc_extents(16 * MiB, 16 * MiB, "domU memory") == [extents[10]]


def test_extents_span_several_free_ranges() -> None:
    fa = FrameAllocator([(0, 1 * GiB)])
    hole = fa.alloc_aligned(64 * MiB, 64 * MiB, "hole")
    assert hole == RESERVED_MFN
    fa.alloc_aligned(16 * MiB, 16 * MiB, "pin")  # 128..144 MiB
    fa.free(hole, mfn(64 * MiB))
    got = fa.alloc_extents(96 * MiB, 16 * MiB, "guest")
    assert [e << PAGE_SHIFT for e in got] == [m * MiB for m in (64, 80, 96, 112, 144, 160)]


def test_large_machine_is_cheap() -> None:
    fa = FrameAllocator(memory_ranges(64 * GiB))
    got = fa.alloc_extents(32 * GiB, 16 * MiB, "big guest")
    assert len(got) == 2048
    assert len(fa.free_ranges()) == 1  # the low range is used up, the high one cut
    for e in got:
        fa.free(e, EXTENT_PAGES)
    assert fa.free_ranges() == [
        (RESERVED_MFN, mfn(2 * GiB) - RESERVED_MFN),
        (mfn(4 * GiB), mfn(62 * GiB)),
    ]


# -- the I/O hole: RAM above 2 GiB starts at 4 GiB ----------------------------------------


def in_hole(first_mfn: int, count: int) -> bool:
    """Whether frames [first_mfn, first_mfn + count) touch machine addresses 2-4 GiB."""
    return first_mfn < mfn(4 * GiB) and first_mfn + count > mfn(2 * GiB)


def test_a_4gib_machine_has_ram_at_0_and_4gib() -> None:
    fa = FrameAllocator(memory_ranges(4 * GiB))
    assert fa.free_ranges() == [
        (RESERVED_MFN, mfn(2 * GiB) - RESERVED_MFN),
        (mfn(4 * GiB), mfn(2 * GiB)),
    ]
    assert fa.free_bytes == 4 * GiB - 64 * MiB
    assert fa.total_pages == mfn(4 * GiB)  # RAM frames, as physinfo counts them
    assert fa.max_page == mfn(6 * GiB)  # one past the top frame: grant frames start here
    assert not fa.is_ram(mfn(2 * GiB)) and not fa.is_ram(mfn(4 * GiB) - 1)
    assert fa.is_ram(mfn(2 * GiB) - 1) and fa.is_ram(mfn(4 * GiB))
    assert not fa.is_ram(mfn(6 * GiB))


def test_no_frame_of_the_hole_is_ever_handed_out() -> None:
    fa = FrameAllocator(memory_ranges(4 * GiB))
    # A 2 GiB guest: its extents fill RAM below the hole and go on at 4 GiB.
    rma = fa.alloc_aligned(64 * MiB, 64 * MiB, "RMA")
    extents = fa.alloc_extents(2 * GiB - 64 * MiB, 16 * MiB, "guest")
    assert not in_hole(rma, mfn(64 * MiB))
    assert not any(in_hole(e, EXTENT_PAGES) for e in extents)
    assert sorted(e << PAGE_SHIFT for e in extents)[-4:] == [
        4 * GiB + k * 16 * MiB for k in range(4)
    ]
    # A 1 GiB RMA: nothing below the hole is free, [4, 5) GiB is cut: [5, 6) GiB.
    assert fa.alloc_aligned(1 * GiB, 1 * GiB, "RMA") == mfn(5 * GiB)
    with pytest.raises(AllocError, match="out of memory"):
        fa.alloc_extents(fa.free_bytes + 16 * MiB, 16 * MiB, "too much")
    with pytest.raises(ValueError, match="outside allocatable frames"):
        fa.free(mfn(2 * GiB), EXTENT_PAGES)  # a frame of the hole was never RAM


def test_an_rma_never_straddles_the_hole() -> None:
    fa = FrameAllocator(memory_ranges(3 * GiB))
    fa.alloc_extents(1984 * MiB - 256 * MiB, 16 * MiB, "filler")  # leaves [1792, 2048) MiB
    assert fa.alloc_aligned(256 * MiB, 256 * MiB, "RMA") == mfn(1792 * MiB)
    # No naturally aligned 512 MiB block below the hole is free: it goes to 4 GiB.
    assert fa.alloc_aligned(512 * MiB, 512 * MiB, "RMA") == mfn(4 * GiB)


def make_map() -> PhysMap:
    """A 64 MiB RMA at 64 MiB, then extents out of order and apart from the RMA."""
    return PhysMap(mfn(64 * MiB), mfn(64 * MiB), [mfn(512 * MiB), mfn(256 * MiB)])


def test_physmap_translation_at_boundaries() -> None:
    pm = make_map()
    assert pm.nr_pages == mfn(64 * MiB) + 2 * EXTENT_PAGES
    assert pm.memory_bytes == 96 * MiB and pm.rma_bytes == 64 * MiB
    rma_pages = mfn(64 * MiB)
    assert pm.pfn_to_mfn(0) == mfn(64 * MiB)
    assert pm.pfn_to_mfn(rma_pages - 1) == mfn(128 * MiB) - 1
    assert pm.pfn_to_mfn(rma_pages) == mfn(512 * MiB)
    assert pm.pfn_to_mfn(rma_pages + EXTENT_PAGES - 1) == mfn(528 * MiB) - 1
    assert pm.pfn_to_mfn(rma_pages + EXTENT_PAGES) == mfn(256 * MiB)
    assert pm.pfn_to_mfn(pm.nr_pages - 1) == mfn(272 * MiB) - 1
    for bad in (pm.nr_pages, -1, 1 << 40):
        with pytest.raises(NotOwned):
            pm.pfn_to_mfn(bad)
    with pytest.raises(LookupError, match="outside the domain"):
        pm.pfn_to_mfn(pm.nr_pages)


def test_physmap_m2p_and_ownership() -> None:
    pm = make_map()
    for pfn in (0, 1, mfn(64 * MiB) - 1, mfn(64 * MiB), pm.nr_pages - 1, 0x4123, 0x5FFF):
        m = pm.pfn_to_mfn(pfn)
        assert pm.owns_mfn(m)
        assert pm.mfn_to_pfn(m) == pfn
    for m in (mfn(64 * MiB) - 1, mfn(128 * MiB), mfn(272 * MiB), mfn(511 * MiB), 0):
        assert not pm.owns_mfn(m)
        with pytest.raises(NotOwned):
            pm.mfn_to_pfn(m)


def test_physmap_runs_merge_adjacent_pieces() -> None:
    assert list(make_map().mfns()) == [
        (mfn(64 * MiB), mfn(64 * MiB)),
        (mfn(512 * MiB), EXTENT_PAGES),
        (mfn(256 * MiB), EXTENT_PAGES),
    ]
    contiguous = PhysMap(mfn(64 * MiB), mfn(64 * MiB), [mfn(128 * MiB), mfn(144 * MiB)])
    assert list(contiguous.mfns()) == [(mfn(64 * MiB), mfn(96 * MiB))]


def test_physmap_frees_back_to_allocator() -> None:
    fa = FrameAllocator([(0, 1 * GiB)])
    initial = fa.free_bytes
    rma = fa.alloc_aligned(64 * MiB, 64 * MiB, "rma")
    pm = PhysMap(rma, mfn(64 * MiB), fa.alloc_extents(64 * MiB, 16 * MiB, "extents"))
    assert fa.free_bytes == initial - pm.memory_bytes
    for first, count in pm.mfns():
        fa.free(first, count)
    assert fa.free_bytes == initial and len(fa.free_ranges()) == 1


def test_physmap_rejects_bad_extents() -> None:
    with pytest.raises(ValueError, match="not aligned"):
        PhysMap(0x4000, 0x4000, [0x10001])
    with pytest.raises(ValueError, match="twice"):
        PhysMap(0x4000, 0x4000, [0x10000, 0x10000])
    with pytest.raises(ValueError, match="32-bit"):
        PhysMap(0x4000, 0x4000, [1 << 32])


def test_p2m_array() -> None:
    pm = make_map()
    p2m = pm.p2m_array()
    assert p2m.typecode == "I" and p2m.itemsize == 4
    assert len(p2m) == pm.nr_pages
    assert list(p2m) == [pm.pfn_to_mfn(pfn) for pfn in range(pm.nr_pages)]


def test_rma_layout() -> None:
    assert rma_layout(64 * MiB) == {
        "shared_info": 0x3FFF000,
        "console": 0x3FFE000,
        "xenstore": 0x3FFD000,
    }
    assert rma_layout(256 * MiB)["shared_info"] == 256 * MiB - 4096
    with pytest.raises(ValueError, match="invalid RMA size 32MiB"):
        rma_layout(32 * MiB)


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        (256 * MiB, 64 * MiB),  # 1/16 is 16 MiB: the 64 MiB floor wins
        (1 * GiB, 64 * MiB),
        (1040 * MiB, 80 * MiB),  # 65 MiB rounds up to RMA + one extent
        (2 * GiB, 128 * MiB),
        (4 * GiB, 256 * MiB),
        (64 * GiB, 2 * GiB - 64 * MiB),  # 4 GiB capped below the I/O hole
    ],
)
def test_dom0_memory_default(machine: int, expected: int) -> None:
    got = dom0_memory_default(machine)
    assert got == expected
    assert (got - 64 * MiB) % EXTENT_BYTES == 0


def test_dom0_memory_given_or_other_rma() -> None:
    assert dom0_memory_default(4 * GiB, dom0_mem=512 * MiB) == 512 * MiB
    assert dom0_memory_default(1 * GiB, rma_size=256 * MiB) == 256 * MiB
    with pytest.raises(ValueError, match="RMA plus whole 16MiB extents"):
        dom0_memory_default(4 * GiB, dom0_mem=72 * MiB)
    with pytest.raises(AllocError, match="2GiB I/O hole"):
        dom0_memory_default(8 * GiB, dom0_mem=2 * GiB)
    with pytest.raises(AllocError, match="cannot hold"):
        dom0_memory_default(96 * MiB)


@pytest.mark.parametrize(
    ("memory", "expected"),
    [
        (1 * MiB, 256 * 1024),
        (16 * MiB, 256 * 1024),
        (64 * MiB, 1 * MiB),
        (80 * MiB, 2 * MiB),  # 1.25 MiB rounds up to a power of two
        (2 * GiB, 32 * MiB),
    ],
)
def test_htab_bytes_for(memory: int, expected: int) -> None:
    got = htab_bytes_for(memory)
    assert got == expected
    sdr1_encode(0, got)  # a size SDR1 can describe
