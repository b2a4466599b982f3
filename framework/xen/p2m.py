"""Xen's pfn -> mfn translation with the 970 port's four classes, and dom0's foreign area.

Translation is always on and the guest only ever names PFNs, so every hcall that takes a
frame (H_ENTER, H_PUT_TCE, grant ops, xencomm) asks this module what the PFN means. The
classes are checked in the port's order (``pfn2mfn`` in Xen/PPC's ``mm.c``):

1. FOREIGN: bit 22 of the pfn set - a slot of the foreign map area (guest-physical
   16 GiB upward, 1024 slots of 4 KiB) where grant mappings of other domains' pages live;
2. GNTTAB: pfn in [machine pages, machine pages + 4) - the domain's own grant frames;
3. IO: a privileged domain naming a pfn in the 2-4 GiB I/O hole (mfn = pfn);
4. LOGICAL: the domain's own memory, through its p2m (`PhysMap`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Final

from framework.errors import NotOwned
from framework.hw970.devtree import IO_HOLE_END, IO_HOLE_START
from framework.hw970.memory import PAGE_SHIFT
from framework.xen.public.arch_powerpc import (
    FOREIGN_PFN_BASE,
    FOREIGN_SLOTS,
    NR_GRANT_FRAMES,
)

if TYPE_CHECKING:
    from framework.xen.domain import Domain

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


def pfn_to_mfn(dom: Domain, pfn: int, machine_pages: int) -> Translation:
    """What `pfn` means for `dom`; `NotOwned` (a KeyError) with a sentence if nothing."""
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
    if machine_pages <= pfn < machine_pages + NR_GRANT_FRAMES:
        frames = dom.grant_frames
        k = pfn - machine_pages
        if k >= len(frames):
            raise NotOwned(f"grant frame pfn {pfn:#x}: d{dom.domid} has {len(frames)} frames")
        return Translation(frames[k], PfnClass.GNTTAB)
    if dom.privileged and IO_HOLE_START_PFN <= pfn < IO_HOLE_END_PFN:
        return Translation(pfn, PfnClass.IO)
    if dom.phys is None:
        raise NotOwned(f"d{dom.domid} has no memory yet")
    return Translation(dom.phys.pfn_to_mfn(pfn), PfnClass.LOGICAL)
