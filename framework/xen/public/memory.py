"""XENMEM_* (`memory.h`): memory reservation commands and their argument layout."""

from __future__ import annotations

from typing import Final

from framework.xen.public.layout import Layout

XENMEM_increase_reservation: Final = 0
XENMEM_decrease_reservation: Final = 1
XENMEM_populate_physmap: Final = 6

MEMORY_RESERVATION: Final = Layout(
    "xen_memory_reservation",
    32,
    {
        "extent_start": (0, 8),
        "nr_extents": (8, 8),
        "extent_order": (16, 4),
        "address_bits": (20, 4),
        "domid": (24, 2),
    },
)
