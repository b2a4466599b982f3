"""xencomm descriptors (`xencomm.h`): how a PowerPC guest names hypercall arguments in
memory, by guest-physical address, since Xen copies them in real mode.

A descriptor is ``struct xencomm_desc { u32 magic; u32 nr_addrs; u64 address[]; }``, each
address valid to the end of its 4 KiB page (~0 entries skipped); a handle with bit 63 set
is "inline": one guest-physically contiguous buffer.  The guest side builds them; Xen's
side (`framework.xen.xencomm`) walks them through the domain's p2m.
"""

from __future__ import annotations

import struct
from typing import Final

from framework.hw970.memory import PAGE_SIZE

XENCOMM_MAGIC: Final = 0x58434F4D  # 'XCOM'
XENCOMM_INLINE_FLAG: Final = 1 << 63
XENCOMM_INVALID: Final = ~0 & (2**64 - 1)
XENCOMM_DESC_HEADER: Final = 8  # u32 magic, u32 nr_addrs
#: The descriptor header: magic, nr_addrs.
XENCOMM_HEADER: Final = struct.Struct(">II")
#: Most addresses a descriptor can hold when it starts at the top of its page.
XENCOMM_MAX_ADDRS: Final = (PAGE_SIZE - XENCOMM_DESC_HEADER) // 8

_PAGE_MASK: Final = PAGE_SIZE - 1


def build_descriptor(addrs: list[int]) -> bytes:
    """Guest side: the bytes of a descriptor naming `addrs` (to place within one page)."""
    if len(addrs) > XENCOMM_MAX_ADDRS:
        raise ValueError(
            f"{len(addrs)} addresses do not fit one 4KiB page (at most {XENCOMM_MAX_ADDRS})"
        )
    return XENCOMM_HEADER.pack(XENCOMM_MAGIC, len(addrs)) + struct.pack(f">{len(addrs)}Q", *addrs)


def descriptor_for_buffer(gpa: int, nbytes: int) -> list[int]:
    """Guest side: one guest-physical address per page that [gpa, gpa + nbytes) touches."""
    if nbytes <= 0:
        return []
    first_page = gpa & ~_PAGE_MASK
    last_page = (gpa + nbytes - 1) & ~_PAGE_MASK
    return [gpa, *range(first_page + PAGE_SIZE, last_page + 1, PAGE_SIZE)]


__all__ = [
    "XENCOMM_DESC_HEADER",
    "XENCOMM_HEADER",
    "XENCOMM_INLINE_FLAG",
    "XENCOMM_INVALID",
    "XENCOMM_MAGIC",
    "XENCOMM_MAX_ADDRS",
    "build_descriptor",
    "descriptor_for_buffer",
]
