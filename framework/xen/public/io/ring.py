"""`ring.h`: the shared ring header and how many entries a one-page ring holds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from framework.hw970.memory import PAGE_SIZE
from framework.xen.public.layout import Layout

#: RING_IDX is an unsigned 32-bit counter that runs freely and wraps at 2**32.
RING_IDX_MASK: Final = 0xFFFFFFFF

#: The 3.0-era `struct *_sring` header: four RING_IDX then `uint8_t pad[48]`, so the
#: entry array starts at byte 64 of the shared page.
SHARED_RING_HEADER: Final = Layout(
    "sring",
    64,
    {"req_prod": (0, 4), "req_event": (4, 4), "rsp_prod": (8, 4), "rsp_event": (12, 4)},
)
SRING_ENTRIES_OFFSET: Final = SHARED_RING_HEADER.size


def ring_size(entry_bytes: int, page: int = PAGE_SIZE) -> int:
    """Entries in a shared ring of `page` bytes (`__RING_SIZE`): the largest power of two
    that fits in the page after the 64-byte header."""
    if entry_bytes <= 0:
        raise ValueError(f"ring entry size {entry_bytes} must be positive")
    fits = (page - SRING_ENTRIES_OFFSET) // entry_bytes
    if fits < 1:
        raise ValueError(
            f"a {entry_bytes}-byte ring entry does not fit in a {page}-byte page after the "
            f"{SRING_ENTRIES_OFFSET}-byte shared ring header"
        )
    return 1 << (fits.bit_length() - 1)


@dataclass(frozen=True)
class RingType:
    """What DEFINE_RING_TYPES declares: a request and a response sharing one slot array
    (a union), so a slot is as large as the larger of the two."""

    name: str
    request: Layout
    response: Layout

    @property
    def entry_bytes(self) -> int:
        return max(self.request.size, self.response.size)

    def size(self, page: int = PAGE_SIZE) -> int:
        """Entries in a ring of this type on a `page`-byte shared page."""
        return ring_size(self.entry_bytes, page)
