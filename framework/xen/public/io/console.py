"""`console.h`: the console page, an input and an output byte ring with their indices."""

from __future__ import annotations

from typing import Final

from framework.xen.public.layout import Layout

XENCONS_IN_SIZE: Final = 1024
XENCONS_OUT_SIZE: Final = 2048
#: struct xencons_interface: char in[1024]; char out[2048]; then the four u32 indices.
XENCONS_INTERFACE: Final = Layout(
    "xencons_interface",
    XENCONS_IN_SIZE + XENCONS_OUT_SIZE + 16,
    {
        "in": (0, XENCONS_IN_SIZE),
        "out": (XENCONS_IN_SIZE, XENCONS_OUT_SIZE),
        "in_cons": (3072, 4),
        "in_prod": (3076, 4),
        "out_cons": (3080, 4),
        "out_prod": (3084, 4),
    },
)
