"""A TCE table as Xen keeps it for a domain: the hardware table the device walks, then the
guest's own (PFN-based) view of each entry, both in machine memory so a memory image
carries them.  A leaf module, so that `Domain` can type its tables.
"""

from __future__ import annotations

from framework.hw970.iommu import (
    TCE_ENTRY_BYTES,
    TCE_PAGE_READ,
    TCE_PAGE_SHIFT,
    TCE_PAGE_SIZE,
    TCE_PAGE_WRITE,
    TCE_RPN_MASK,
    TceTable,
)
from framework.hw970.memory import PAGE_SHIFT, MachineMemory
from framework.xen.public.arch_powerpc import FOREIGN_PFN_BASE


class XenTceTable(TceTable):
    """A TCE table plus, right after it, the guest's own (PFN-based) view of each entry."""

    def __init__(
        self, memory: MachineMemory, liobn: int, table_maddr: int, window_bytes: int
    ) -> None:
        super().__init__(memory, liobn, table_maddr, window_bytes)
        #: ioba -> foreign area slot, for entries mapping a grant (so an unmap can refuse).
        #: Derived from the guest view; a restored table rebuilds it with `rescan_foreign`.
        self.foreign: dict[int, int] = {}
        self.guest_maddr = table_maddr + self.table_bytes
        if self.guest_maddr + self.table_bytes > memory.size:
            raise ValueError(
                f"guest view of liobn {liobn:#x}'s TCE table at {self.guest_maddr:#x} lies "
                f"outside machine memory of {memory.size:#x}"
            )

    @property
    def alloc_pages(self) -> int:
        """Frames of the whole allocation (hardware table + guest view)."""
        return 2 * self.table_bytes >> PAGE_SHIFT

    def put_guest(self, ioba: int, tce: int) -> None:
        """Remember the TCE exactly as the guest passed it to H_PUT_TCE."""
        self.memory.write_u64(self.guest_maddr + self.index(ioba) * TCE_ENTRY_BYTES, tce)

    def get_guest(self, ioba: int) -> int:
        """The TCE as the guest last wrote it (0 if never)."""
        return self.memory.read_u64(self.guest_maddr + self.index(ioba) * TCE_ENTRY_BYTES)

    def rescan_foreign(self) -> None:
        """Rebuild `foreign` from the guest view in memory (after a restore)."""
        self.foreign.clear()
        for k in range(self.entries):
            tce = self.memory.read_u64(self.guest_maddr + k * TCE_ENTRY_BYTES)
            pfn = (tce & TCE_RPN_MASK) >> TCE_PAGE_SHIFT
            if tce & (TCE_PAGE_READ | TCE_PAGE_WRITE) and pfn & FOREIGN_PFN_BASE:
                self.foreign[k * TCE_PAGE_SIZE] = pfn - FOREIGN_PFN_BASE


__all__ = ["XenTceTable"]
