"""The 970 port's conventions (`arch-powerpc.h` and the port's tools): where a domain's
special pages, hashed page table, grant frames and foreign mappings live, and in what
units its memory comes.

Xen, dom0's toolstack and the guest kernel must agree on each of these, so each is declared
here once.  The hardware facts they rest on (the RMA sizes HID4 can encode, the smallest
HTAB SDR1 allows, the 4 KiB page) are the 970's and stay in `framework.hw970`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from framework.hw970.memory import PAGE_SHIFT, PAGE_SIZE
from framework.hw970.mmu import HTAB_MIN_BYTES, RMA_SIZES, rma_log2

#: Memory beyond the RMA comes in order-12 extents of 4 KiB pages: the 970's 16 MiB large
#: page, which is how the guest kernel maps it (memory_op's only extent order).
EXTENT_ORDER: Final = 12
EXTENT_PAGES: Final = 1 << EXTENT_ORDER
EXTENT_BYTES: Final = 1 << (PAGE_SHIFT + EXTENT_ORDER)

#: Xen keeps the bottom 64 MiB of machine memory (text, heap) for itself.
XEN_RESERVED_BYTES: Final = 64 << 20

#: A domain's grant table: frames Xen allocates, reached at pfns just above its memory.
NR_GRANT_FRAMES: Final = 4

#: The foreign map area: guest pfns with bit 22 set (guest-physical 16 GiB upward) are
#: slots where a privileged domain maps other domains' granted pages, 1024 of 4 KiB.
FOREIGN_PFN_SHIFT: Final = 22
FOREIGN_PFN_BASE: Final = 1 << FOREIGN_PFN_SHIFT
FOREIGN_GPA_BASE: Final = FOREIGN_PFN_BASE << PAGE_SHIFT  # 16 GiB
FOREIGN_SLOTS: Final = 1024
#: dom0's devtree `foreign-map = <22 1024>`: (pfn bit, slots).
DOM0_FOREIGN_MAP: Final = (FOREIGN_PFN_SHIFT, FOREIGN_SLOTS)
#: No domain's memory may reach the foreign area's pfns.
GUEST_MEMORY_LIMIT: Final = FOREIGN_GPA_BASE

#: The smallest RMA: guests take exceptions in real mode inside it.
RMA_MIN_BYTES: Final = RMA_SIZES[0]


def rma_layout(rma_size: int) -> dict[str, int]:
    """Guest-physical addresses of the special pages at the RMA top (reachable in real mode).

    Same order as libxc's ``alloc_magic_pages``: shared_info, console, xenstore downward.
    """
    rma_log2(rma_size)  # ValueError naming the allowed sizes
    return {
        "shared_info": rma_size - PAGE_SIZE,
        "console": rma_size - 2 * PAGE_SIZE,
        "xenstore": rma_size - 3 * PAGE_SIZE,
    }


def htab_bytes_for(memory_bytes: int) -> int:
    """Hashed page table size for a domain: 1/64 of its memory, a power of two, >= 256 KiB.

    The 1/64 rule is xend's (``getRequiredShadowMemory``: max(maxmem / 64, shadow_mem)) and
    dom0's in ``domain_build.c``; SDR1 needs a power of two of at least 256 KiB.
    """
    if memory_bytes <= 0:
        raise ValueError(f"domain memory {memory_bytes} must be positive")
    want = -(-memory_bytes // 64)
    return max(HTAB_MIN_BYTES, 1 << (want - 1).bit_length())


# --- boot: a kernel image and how it is entered -----------------------------------------
@dataclass(frozen=True)
class KernelImage:
    """A guest kernel: code bytes, where they load (guest-physical) and its entry.

    Xen (for dom0) and the domain builder (for a domU) load it the same way and enter it
    at `entry` in real mode with r3 = `devtree_gpa`, the flattened devtree (no start_info).
    """

    image: bytes
    load_gpa: int
    entry: int
    devtree_gpa: int  # where the kernel expects its devtree (r3 at entry)


__all__ = [
    "DOM0_FOREIGN_MAP",
    "EXTENT_BYTES",
    "EXTENT_ORDER",
    "EXTENT_PAGES",
    "FOREIGN_GPA_BASE",
    "FOREIGN_PFN_BASE",
    "FOREIGN_PFN_SHIFT",
    "FOREIGN_SLOTS",
    "GUEST_MEMORY_LIMIT",
    "NR_GRANT_FRAMES",
    "RMA_MIN_BYTES",
    "XEN_RESERVED_BYTES",
    "KernelImage",
    "htab_bytes_for",
    "rma_layout",
]
