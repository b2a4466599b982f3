"""Xen's pfn -> mfn translation with the 970 port's four classes, and dom0's foreign area.

Translation is always on and the guest only ever names PFNs, so every hcall that takes a
frame (H_ENTER, H_PUT_TCE, grant ops, xencomm) asks this module what the PFN means. The
classes are checked in the port's order (``pfn2mfn`` in Xen/PPC's ``mm.c``):

1. FOREIGN: bit 22 of the pfn set - a slot of the foreign map area (guest-physical
   16 GiB upward, 1024 slots of 4 KiB) where grant mappings of other domains' pages live;
2. GNTTAB: pfn in [max_page, max_page + 4) - the domain's own grant frames (max_page is
   one past the highest RAM frame);
3. IO: a privileged domain naming a pfn in the 2-4 GiB I/O hole (mfn = pfn). The hole is
   never RAM (machine memory above 2 GiB continues at 4 GiB), so this class reaches only
   I/O space; a frame there that were RAM (a board whose RAM were flat) is refused, else
   dom0 could map any domain's memory, its RMA included, by naming the machine frame;
4. LOGICAL: the domain's own memory, through its p2m (`PhysMap`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Final

from framework.errors import NotOwned
from framework.hw970.memory import IO_HOLE_END, IO_HOLE_START, PAGE_SHIFT
from framework.xen.public.arch_powerpc import (
    FOREIGN_PFN_BASE,
    FOREIGN_SLOTS,
    NR_GRANT_FRAMES,
)

if TYPE_CHECKING:
    from framework.xen.domain import Domain
    from framework.xen.mm import FrameAllocator

IO_HOLE_START_PFN: Final = IO_HOLE_START >> PAGE_SHIFT
IO_HOLE_END_PFN: Final = IO_HOLE_END >> PAGE_SHIFT


class PfnClass(IntEnum):
    LOGICAL = 0
    FOREIGN = 1
    GNTTAB = 2
    IO = 3


@dataclass(slots=True)
class ForeignSlot:
    """One mapped slot: whose frame, which grant it came from, and whether it is read-only."""

    mfn: int
    domid: int  # the granting domain
    ref: int  # its grant reference
    readonly: bool


@dataclass
class ForeignArea:
    """dom0's foreign map area: 1024 slots of 4 KiB (devtree ``foreign-map = <22 1024>``)."""

    slots: list[ForeignSlot | None] = field(default_factory=lambda: [None] * FOREIGN_SLOTS)

    def alloc(self, slot: ForeignSlot) -> int | None:
        """Lowest free slot index, now holding `slot`; None when all 1024 are used."""
        for i, s in enumerate(self.slots):
            if s is None:
                self.slots[i] = slot
                return i
        return None

    def free(self, index: int) -> ForeignSlot:
        s = self.slots[index]
        if s is None:
            raise ValueError(f"foreign slot {index} is not mapped")
        self.slots[index] = None
        return s

    def in_use(self) -> int:
        return sum(1 for s in self.slots if s is not None)


def foreign_pfn(index: int) -> int:
    """The pfn of foreign slot `index` (what a grant map returns as host_addr >> 12)."""
    return FOREIGN_PFN_BASE + index


@dataclass(frozen=True, slots=True)
class Translation:
    mfn: int
    cls: PfnClass
    writable: bool = True  # False for a read-only foreign (grant) mapping


def pfn_to_mfn(dom: Domain, pfn: int, frames: FrameAllocator) -> Translation:
    """What `pfn` means for `dom` on a machine whose RAM `frames` knows; `NotOwned` (a
    KeyError) with a sentence if nothing."""
    if pfn & FOREIGN_PFN_BASE:
        index = pfn - FOREIGN_PFN_BASE
        area = dom.foreign
        if area is None:
            raise NotOwned(f"pfn {pfn:#x} is in the foreign area but d{dom.domid} has none")
        if not 0 <= index < FOREIGN_SLOTS or area.slots[index] is None:
            raise NotOwned(f"foreign pfn {pfn:#x} (slot {index}) is not mapped")
        s = area.slots[index]
        assert s is not None
        return Translation(s.mfn, PfnClass.FOREIGN, not s.readonly)
    max_page = frames.max_page
    if max_page <= pfn < max_page + NR_GRANT_FRAMES:
        grant_frames = dom.grant_frames
        k = pfn - max_page
        if k >= len(grant_frames):
            raise NotOwned(f"grant frame pfn {pfn:#x}: d{dom.domid} has {len(grant_frames)} frames")
        return Translation(grant_frames[k], PfnClass.GNTTAB)
    if dom.privileged and IO_HOLE_START_PFN <= pfn < IO_HOLE_END_PFN:
        if frames.is_ram(pfn):
            raise NotOwned(
                f"IO-class pfn {pfn:#x} is a RAM frame: the I/O class (mfn = pfn) reaches "
                "only I/O space, never memory"
            )
        return Translation(pfn, PfnClass.IO)
    if dom.phys is None:
        raise NotOwned(f"d{dom.domid} has no memory yet")
    return Translation(dom.phys.pfn_to_mfn(pfn), PfnClass.LOGICAL)
