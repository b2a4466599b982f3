"""Xen's machine frame allocator and a domain's physical memory map (p2m/m2p).

Why this shape: on the 970 a domain's memory is an RMA (physically contiguous and
naturally aligned, because real mode only offsets by RMOR and bounds by RMLR) followed by
16 MiB extents (the guest maps its linear map with 16 MiB pages). So the allocator hands
out aligned blocks, never single pages, and keeps free memory as a sorted list of
``(start_mfn, count)`` ranges: a 4 GiB machine is a handful of ranges, not a million pages.
Ownership lives in the domain (its `PhysMap`), not in the allocator.

Xen learns RAM from the firmware's /memory ranges, and on a machine of more than 2 GiB
those skip the 2-4 GiB I/O hole: the allocator starts with one free range per RAM range,
so no frame in the hole is ever handed out, and a block never straddles it.

Sources: XEN-PPC-FACTS.md ("Real Mode Area", "Memory beyond the RMA"); Xen 3.0.4/3.1
``xen/arch/powerpc/domain_build.c`` (dom0 sizing) and xend ``image.py``
(``PPC_LinuxImageHandler.getRequiredShadowMemory``: HTAB = 1/64 of memory).
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Final

from framework.errors import AllocError, NotOwned
from framework.hw970.memory import IO_HOLE_START, PAGE_SHIFT, PAGE_SIZE
from framework.hw970.mmu import RMA_SIZES, rma_log2
from framework.units import format_size
from framework.xen.public.arch_powerpc import (
    EXTENT_BYTES,
    EXTENT_ORDER,
    EXTENT_PAGES,
    RMA_MIN_BYTES,
    XEN_RESERVED_BYTES,
)

__all__ = [
    "DOM0_MIN_BYTES",
    "INVALID_MFN",
    "AllocError",
    "FrameAllocator",
    "PhysMap",
    "SparsePhysMap",
    "dom0_memory_default",
]

#: Smallest default dom0: the minimum RMA (see `dom0_memory_default` for why not 192 MiB).
DOM0_MIN_BYTES: Final = RMA_MIN_BYTES

_MAX_MFN: Final = (1 << 32) - 1  # the p2m holds 32-bit MFNs (44-bit machine addresses)
#: A p2m entry with no frame behind it (Xen's INVALID_MFN in a 32-bit p2m).
INVALID_MFN: Final = (1 << 32) - 1


def _pages(nbytes: int, what: str) -> int:
    """Whole pages in `nbytes`, refusing sizes the frame allocator cannot represent."""
    if nbytes <= 0 or nbytes % PAGE_SIZE:
        raise ValueError(f"{what} {nbytes:#x} is not a positive multiple of 4KiB")
    return nbytes >> PAGE_SHIFT


def _align_pages(align: int) -> int:
    """Alignment in pages; only powers of two of at least a page make sense for MFNs."""
    if align < PAGE_SIZE or align & (align - 1):
        raise ValueError(f"alignment {align:#x} is not a power of two >= 4KiB")
    return align >> PAGE_SHIFT


class FrameAllocator:
    """Machine frames of the RAM ranges above Xen's reserved bottom, as aligned blocks.

    Free memory is two parallel sorted lists (range starts, range lengths in pages),
    with adjacent ranges always merged, so `free` of everything restores the RAM ranges.
    Allocation is first fit from the bottom, hence deterministic for a given history.
    """

    def __init__(
        self,
        ram_ranges: list[tuple[int, int]],
        reserved_bottom: int = XEN_RESERVED_BYTES,
        *,
        scrub: Callable[[int, int], None] | None = None,
    ) -> None:
        """`ram_ranges` are the machine's RAM as (base, size) in bytes (the devtree's
        /memory reg), sorted and disjoint; Xen keeps the bottom `reserved_bottom` bytes.
        `scrub(address, nbytes)` clears every range given back before it is free again
        (Xen scrubs a dying domain's pages), so no frame carries data to its next owner."""
        self._scrub = scrub
        if reserved_bottom < 0 or reserved_bottom % PAGE_SIZE:
            raise ValueError(f"reserved bottom {reserved_bottom:#x} is not a multiple of 4KiB")
        self._ram: list[tuple[int, int]] = []  # (first mfn, end mfn) of each RAM range
        for base, size in ram_ranges:
            if base < 0 or base % PAGE_SIZE:
                raise ValueError(f"RAM range base {base:#x} is not a multiple of 4KiB")
            first = base >> PAGE_SHIFT
            end = first + _pages(size, "RAM range size")
            if self._ram and first < self._ram[-1][1]:
                raise ValueError(f"RAM range at {base:#x} overlaps or precedes the one before")
            self._ram.append((first, end))
        if not self._ram:
            raise ValueError("no RAM ranges: the machine has no memory")
        self.memory_bytes = sum(size for _base, size in ram_ranges)
        #: RAM frames the machine has (what physinfo's total_pages reports).
        self.total_pages = self.memory_bytes >> PAGE_SHIFT
        #: One past the highest RAM frame (Xen's max_page): the grant-table frames'
        #: pfns start here (XEN-PPC-FACTS.md, the GNTTAB class).
        self.max_page = self._ram[-1][1]
        self.first_mfn = reserved_bottom >> PAGE_SHIFT
        self._starts: list[int] = []
        self._counts: list[int] = []
        for first, end in self._ram:
            first = max(first, self.first_mfn)
            if first < end:
                self._starts.append(first)
                self._counts.append(end - first)
        if not self._starts:
            raise ValueError(
                f"reserved bottom {format_size(reserved_bottom)} leaves nothing of "
                f"{format_size(self.memory_bytes)} machine memory"
            )
        self._free_pages = sum(self._counts)

    def is_ram(self, mfn: int) -> bool:
        """Whether machine frame `mfn` is RAM (not the I/O hole, not beyond the top)."""
        return any(first <= mfn < end for first, end in self._ram)

    @property
    def free_bytes(self) -> int:
        """Bytes currently free (what `free` of every allocation gives back exactly)."""
        return self._free_pages << PAGE_SHIFT

    def free_ranges(self) -> list[tuple[int, int]]:
        """The free ranges as (start_mfn, count), sorted; for inspection and tests."""
        return list(zip(self._starts, self._counts, strict=True))

    def largest_aligned_free(self, align: int) -> int:
        """Bytes of the longest free run that starts on an `align`-byte boundary."""
        ap = _align_pages(align)
        best = 0
        for start, count in zip(self._starts, self._counts, strict=True):
            first = -(-start // ap) * ap
            best = max(best, start + count - first)
        return best << PAGE_SHIFT

    def alloc_aligned(self, nbytes: int, align: int, purpose: str) -> int:
        """First MFN of a free block of `nbytes` starting on an `align`-byte boundary."""
        n = _pages(nbytes, f"size of {purpose}")
        ap = _align_pages(align)
        self._check_total(nbytes, purpose)
        for i, (start, count) in enumerate(zip(self._starts, self._counts, strict=True)):
            first = -(-start // ap) * ap
            if first + n <= start + count:
                self._carve(i, first, n)
                return first
        largest = format_size(self.largest_aligned_free(align))
        if align == nbytes:
            what = f"naturally aligned {format_size(nbytes)} block"
        else:
            what = f"{format_size(nbytes)} block aligned to {format_size(align)}"
        raise AllocError(
            f"no {what} free for {purpose}: {format_size(self.free_bytes)} free in total, "
            f"largest aligned free block {largest}"
        )

    def alloc_extents(self, nbytes: int, extent_bytes: int, purpose: str) -> list[int]:
        """First MFNs of naturally aligned extents covering `nbytes`; all or nothing."""
        ep = _align_pages(extent_bytes)
        if nbytes < 0 or nbytes % extent_bytes:
            raise ValueError(
                f"size of {purpose} {nbytes:#x} is not a multiple of {format_size(extent_bytes)}"
            )
        want = nbytes // extent_bytes
        if want == 0:
            return []
        self._check_total(nbytes, purpose)
        # Plan first (nothing changes if the plan falls short), then carve one run per range.
        plan: list[tuple[int, int]] = []  # (first aligned mfn, extents) per free range
        found = 0
        for start, count in zip(self._starts, self._counts, strict=True):
            first = -(-start // ep) * ep
            fits = (start + count - first) // ep if first < start + count else 0
            take = min(fits, want - found)
            if take > 0:
                plan.append((first, take))
                found += take
                if found == want:
                    break
        if found < want:
            raise AllocError(
                f"not enough naturally aligned {format_size(extent_bytes)} extents free for "
                f"{purpose}: need {want}, found {found} "
                f"({format_size(self.free_bytes)} free in total)"
            )
        mfns: list[int] = []
        for first, take in plan:
            self._carve(self._index_of(first), first, take * ep)
            mfns.extend(range(first, first + take * ep, ep))
        return mfns

    def free(self, mfn: int, count: int) -> None:
        """Give `count` frames from `mfn` back; a double free or a foreign range is refused."""
        if count <= 0:
            raise ValueError(f"free of {count} frames at mfn {mfn:#x}: count must be positive")
        end = mfn + count
        if mfn < self.first_mfn or not any(
            first <= mfn and end <= ram_end for first, ram_end in self._ram
        ):
            ranges = ", ".join(
                f"{max(first, self.first_mfn):#x}..{ram_end - 1:#x}" for first, ram_end in self._ram
            )
            raise ValueError(
                f"free of mfns {mfn:#x}..{end - 1:#x}: outside allocatable frames {ranges}"
            )
        i = bisect.bisect_right(self._starts, mfn)  # ranges[i-1] starts at or below mfn
        if i > 0 and self._starts[i - 1] + self._counts[i - 1] > mfn:
            raise ValueError(f"double free: mfn {mfn:#x} is already free")
        if i < len(self._starts) and self._starts[i] < end:
            raise ValueError(f"double free: mfn {self._starts[i]:#x} is already free")
        if self._scrub is not None:
            self._scrub(mfn << PAGE_SHIFT, count << PAGE_SHIFT)
        merge_left = i > 0 and self._starts[i - 1] + self._counts[i - 1] == mfn
        merge_right = i < len(self._starts) and self._starts[i] == end
        if merge_left and merge_right:
            self._counts[i - 1] += count + self._counts[i]
            del self._starts[i], self._counts[i]
        elif merge_left:
            self._counts[i - 1] += count
        elif merge_right:
            self._starts[i] = mfn
            self._counts[i] += count
        else:
            self._starts.insert(i, mfn)
            self._counts.insert(i, count)
        self._free_pages += count

    def _check_total(self, nbytes: int, purpose: str) -> None:
        """Say "out of memory" when no placement could ever help, before blaming alignment."""
        if nbytes > self.free_bytes:
            raise AllocError(
                f"out of memory for {purpose}: need {format_size(nbytes)}, "
                f"{format_size(self.free_bytes)} free"
            )

    def _index_of(self, mfn: int) -> int:
        """Index of the free range containing `mfn` (which the caller knows is free)."""
        return bisect.bisect_right(self._starts, mfn) - 1

    def _carve(self, i: int, first: int, n: int) -> None:
        """Remove [first, first + n) from free range i, keeping what is left on each side."""
        start, count = self._starts[i], self._counts[i]
        left = first - start
        right = start + count - (first + n)
        pieces = [(s, c) for s, c in ((start, left), (first + n, right)) if c > 0]
        self._starts[i : i + 1] = [s for s, _ in pieces]
        self._counts[i : i + 1] = [c for _, c in pieces]
        self._free_pages -= n


class PhysMap:
    """A domain's p2m: pfns 0..rma_pages-1 are the RMA, then each 16 MiB extent in order.

    Translation is arithmetic (RMA offset, or extent index and offset), so a multi-GiB
    domain costs one list entry per extent; `owns_mfn`/`mfn_to_pfn` use a dict keyed by
    ``mfn >> EXTENT_ORDER`` so the m2p side is O(1) too.

    A PhysMap never changes: page-granular changes (a page given away by grant transfer,
    a page received into such a hole) return a new map, a `SparsePhysMap` while any hole
    exists. So this class keeps its arithmetic fast path with no per-call check, and
    anything caching a map's `pfn_to_mfn` (the xencomm walker) sees the change as a new
    object.
    """

    #: Base pfns (never RMA) whose frame the domain gave away; empty for a whole map.
    holes: frozenset[int] = frozenset()
    #: pfn -> mfn of frames received into holes (always a subset of `holes`).
    extras: Mapping[int, int] = MappingProxyType({})

    def __init__(self, rma_mfn: int, rma_pages: int, extents: list[int]) -> None:
        if rma_pages <= 0:
            raise ValueError(f"RMA of {rma_pages} pages: a domain needs an RMA")
        self.rma_mfn = rma_mfn
        self.rma_pages = rma_pages
        self.extents: tuple[int, ...] = tuple(extents)
        self._extent_index: dict[int, int] = {}
        for k, base in enumerate(self.extents):
            if base % EXTENT_PAGES:
                raise ValueError(f"extent mfn {base:#x} is not aligned to 16MiB")
            if base >> EXTENT_ORDER in self._extent_index:
                raise ValueError(f"extent mfn {base:#x} listed twice")
            self._extent_index[base >> EXTENT_ORDER] = k
        top = max([rma_mfn + rma_pages - 1, *(b + EXTENT_PAGES - 1 for b in self.extents)])
        if top > _MAX_MFN:
            raise ValueError(f"mfn {top:#x} does not fit the 32-bit p2m")
        self.end_pfn = rma_pages + len(self.extents) * EXTENT_PAGES
        self.nr_pages = self.end_pfn

    @property
    def rma_bytes(self) -> int:
        """Size of the RMA in bytes (what RMLR must describe)."""
        return self.rma_pages << PAGE_SHIFT

    @property
    def memory_bytes(self) -> int:
        """All of the domain's memory in bytes, RMA included."""
        return self.nr_pages << PAGE_SHIFT

    def pfn_to_mfn(self, pfn: int) -> int:
        """The machine frame behind guest frame `pfn`; `NotOwned` outside the domain."""
        if 0 <= pfn < self.rma_pages:
            return self.rma_mfn + pfn
        rel = pfn - self.rma_pages
        k = rel >> EXTENT_ORDER
        if rel >= 0 and k < len(self.extents):
            return self.extents[k] + (rel & (EXTENT_PAGES - 1))
        raise NotOwned(f"pfn {pfn:#x} is outside the domain's {self.end_pfn:#x} pages")

    def owns_mfn(self, mfn: int) -> bool:
        """Whether machine frame `mfn` belongs to this domain."""
        if self.rma_mfn <= mfn < self.rma_mfn + self.rma_pages:
            return True
        return mfn >> EXTENT_ORDER in self._extent_index

    def mfn_to_pfn(self, mfn: int) -> int:
        """This domain's m2p: the guest frame that maps `mfn`; `NotOwned` if none."""
        if self.rma_mfn <= mfn < self.rma_mfn + self.rma_pages:
            return mfn - self.rma_mfn
        k = self._extent_index.get(mfn >> EXTENT_ORDER)
        if k is None:
            raise NotOwned(f"mfn {mfn:#x} does not belong to the domain")
        return self.rma_pages + (k << EXTENT_ORDER) + (mfn & (EXTENT_PAGES - 1))

    def contiguous(self, pfn: int, count: int) -> bool:
        """Whether pfns [pfn, pfn + count) are all mapped, onto consecutive machine frames
        (what one large-page PTE needs)."""
        try:
            first = self.pfn_to_mfn(pfn)
        except NotOwned:
            return False
        p, end = pfn, pfn + count
        while p < end:
            # Pieces (the RMA, each extent) are contiguous inside; check where each starts.
            try:
                if self.pfn_to_mfn(p) != first + (p - pfn):
                    return False
            except NotOwned:
                return False
            if p < self.rma_pages:
                p = self.rma_pages
            else:
                p = self.rma_pages + (((p - self.rma_pages) >> EXTENT_ORDER) + 1) * EXTENT_PAGES
        return True

    def mfns(self) -> Iterator[tuple[int, int]]:
        """Machine runs (first_mfn, count), adjacent pieces merged: what to free at death."""
        run_start, run_count = self.rma_mfn, self.rma_pages
        for base in self.extents:
            if base == run_start + run_count:
                run_count += EXTENT_PAGES
            else:
                yield run_start, run_count
                run_start, run_count = base, EXTENT_PAGES
        yield run_start, run_count

    def p2m_array(self) -> array[int]:
        """The p2m as Xen keeps it: one 32-bit MFN per guest frame, indexed by pfn."""
        p2m = array("I", range(self.rma_mfn, self.rma_mfn + self.rma_pages))
        if p2m.itemsize != 4:
            raise RuntimeError(f"array('I') is {p2m.itemsize} bytes here, the p2m needs 4")
        for base in self.extents:
            p2m.extend(range(base, base + EXTENT_PAGES))
        return p2m

    # -- page-granular changes (grant transfer) --------------------------------------------
    def with_extents(self, mfns: list[int]) -> PhysMap:
        """This map with more extents after the last one; holes and extras are kept."""
        return _physmap(self, [*self.extents, *mfns], self.holes, dict(self.extras))

    def without_page(self, pfn: int) -> PhysMap:
        """This map with `pfn`'s frame given away (a hole at `pfn`).

        RMA pages can never leave a living domain (real mode must reach all of them);
        an unmapped pfn raises `NotOwned`.
        """
        if 0 <= pfn < self.rma_pages:
            raise ValueError(
                f"pfn {pfn:#x} is in the RMA: RMA pages can never be given away while "
                "the domain lives"
            )
        self.pfn_to_mfn(pfn)  # NotOwned if there is nothing to give
        extras = dict(self.extras)
        extras.pop(pfn, None)  # a received frame leaves again: its pfn stays a hole
        return _physmap(self, list(self.extents), self.holes | {pfn}, extras)

    def with_page(self, pfn: int, mfn: int) -> PhysMap:
        """This map with frame `mfn` received at `pfn`, which must be a hole."""
        if pfn not in self.holes or pfn in self.extras:
            raise ValueError(f"pfn {pfn:#x} is not a hole of the domain's memory map")
        if self.owns_mfn(mfn):
            raise ValueError(f"mfn {mfn:#x} already belongs to the domain")
        if mfn > _MAX_MFN:
            raise ValueError(f"mfn {mfn:#x} does not fit the 32-bit p2m")
        holes = set(self.holes)
        extras = dict(self.extras)
        if PhysMap.pfn_to_mfn(self, pfn) == mfn:
            holes.discard(pfn)  # its own frame came back: the hole closes
        else:
            extras[pfn] = mfn
        return _physmap(self, list(self.extents), frozenset(holes), extras)


class SparsePhysMap(PhysMap):
    """A `PhysMap` with holes (frames given away) and extras (frames received into them).

    Only a domain that took part in a grant transfer has one, so only it pays for the
    extra checks.
    """

    def __init__(
        self,
        rma_mfn: int,
        rma_pages: int,
        extents: list[int],
        holes: frozenset[int],
        extras: dict[int, int],
    ) -> None:
        super().__init__(rma_mfn, rma_pages, extents)
        for pfn in holes:
            if pfn < rma_pages or pfn >= self.end_pfn:
                raise ValueError(f"hole at pfn {pfn:#x} is not an extent page of the domain")
        stray = sorted(set(extras) - holes)
        if stray:
            raise ValueError(f"frames received at pfns {stray} that are not holes")
        self.holes = holes
        self.extras = MappingProxyType(dict(extras))
        self._extra_m2p = {mfn: pfn for pfn, mfn in extras.items()}
        self.nr_pages = self.end_pfn - len(holes) + len(extras)

    def pfn_to_mfn(self, pfn: int) -> int:
        if pfn in self.holes:
            mfn = self.extras.get(pfn)
            if mfn is None:
                raise NotOwned(f"pfn {pfn:#x} is a hole: the domain gave that page away")
            return mfn
        return PhysMap.pfn_to_mfn(self, pfn)

    def owns_mfn(self, mfn: int) -> bool:
        if mfn in self._extra_m2p:
            return True
        if not PhysMap.owns_mfn(self, mfn):
            return False
        return PhysMap.mfn_to_pfn(self, mfn) not in self.holes

    def mfn_to_pfn(self, mfn: int) -> int:
        pfn = self._extra_m2p.get(mfn)
        if pfn is not None:
            return pfn
        pfn = PhysMap.mfn_to_pfn(self, mfn)
        if pfn in self.holes:
            raise NotOwned(f"mfn {mfn:#x} was given away by the domain (pfn {pfn:#x})")
        return pfn

    def contiguous(self, pfn: int, count: int) -> bool:
        if any(pfn <= h < pfn + count for h in self.holes):
            return False  # a hole (even refilled) breaks the machine run
        return PhysMap.contiguous(self, pfn, count)

    def mfns(self) -> Iterator[tuple[int, int]]:
        gone = sorted(PhysMap.pfn_to_mfn(self, pfn) for pfn in self.holes)
        runs: list[tuple[int, int]] = []
        for start, count in PhysMap.mfns(self):
            end = start + count
            lo = bisect.bisect_left(gone, start)
            hi = bisect.bisect_left(gone, end)
            for g in gone[lo:hi]:
                if g > start:
                    runs.append((start, g - start))
                start = g + 1
            if start < end:
                runs.append((start, end - start))
        runs.extend((mfn, 1) for mfn in self.extras.values())
        runs.sort()
        merged: list[tuple[int, int]] = []
        for start, count in runs:
            if merged and merged[-1][0] + merged[-1][1] == start:
                merged[-1] = (merged[-1][0], merged[-1][1] + count)
            else:
                merged.append((start, count))
        yield from merged

    def p2m_array(self) -> array[int]:
        """As `PhysMap.p2m_array`, holes holding INVALID_MFN (all ones)."""
        p2m = PhysMap.p2m_array(self)
        for pfn in self.holes:
            p2m[pfn] = self.extras.get(pfn, INVALID_MFN)
        return p2m


def _physmap(
    old: PhysMap, extents: list[int], holes: frozenset[int], extras: dict[int, int]
) -> PhysMap:
    """The right class for a map's contents: dense when nothing is missing."""
    if not holes:
        return PhysMap(old.rma_mfn, old.rma_pages, extents)
    return SparsePhysMap(old.rma_mfn, old.rma_pages, extents, holes, extras)


def dom0_memory_default(
    machine_bytes: int,
    dom0_mem: int | None = None,
    rma_size: int = RMA_SIZES[0],
    reserved_bottom: int = XEN_RESERVED_BYTES,
) -> int:
    """dom0's memory: `dom0_mem` when given, else max(64 MiB, machine/16), shaped for Xen.

    Xen/PPC's ``domain_build.c`` took max(1/16 of memory, CONFIG_MIN_DOM0_PAGES = 192 MiB),
    raised it to the RMA, rounded up to whole 16 MiB extents and capped it at the I/O hole.
    We keep that rule but use a 64 MiB floor (the minimum RMA) so that the small machines
    scenarios allow (256 MiB) still leave room for guests. The cap keeps Xen's reserved
    bottom plus dom0 below 2 GiB (the scenario check) and inside the machine. A given
    `dom0_mem` is used as is but must already be RMA + whole extents and fit the cap.
    """
    rma_log2(rma_size)
    limit = min(IO_HOLE_START, machine_bytes) - reserved_bottom
    cap = rma_size + (limit - rma_size) // EXTENT_BYTES * EXTENT_BYTES
    if cap < rma_size:
        raise AllocError(
            f"machine memory {format_size(machine_bytes)} minus {format_size(reserved_bottom)} "
            f"for Xen cannot hold dom0's {format_size(rma_size)} RMA"
        )
    if dom0_mem is not None:
        if dom0_mem < rma_size or (dom0_mem - rma_size) % EXTENT_BYTES:
            raise ValueError(
                f"dom0_mem {format_size(dom0_mem)} is not the {format_size(rma_size)} RMA "
                "plus whole 16MiB extents"
            )
        if dom0_mem > cap:
            raise AllocError(
                f"dom0_mem {format_size(dom0_mem)} exceeds {format_size(cap)}: dom0 plus "
                f"{format_size(reserved_bottom)} for Xen must stay below the 2GiB I/O hole "
                f"and inside {format_size(machine_bytes)} of machine memory"
            )
        return dom0_mem
    want = max(DOM0_MIN_BYTES, machine_bytes // 16, rma_size)
    want = rma_size + -(-(want - rma_size) // EXTENT_BYTES) * EXTENT_BYTES
    return min(want, cap)
