"""PHYSDEVOP_* (`physdev.h` of Xen 3.0.4): the interrupt half of physdev_op that a Linux
guest's pirq code uses (status query when it binds a pirq, EOI after handling one).

physdev_op(cmd, arg): r4 = cmd, r5 = xencomm handle of the per-command structure.
"""

from __future__ import annotations

from typing import Final

from framework.xen.public.layout import Layout

PHYSDEVOP_irq_status_query: Final = 5
PHYSDEVOP_eoi: Final = 12
XENIRQSTAT_needs_eoi: Final = 1 << 0
XENIRQSTAT_shared: Final = 1 << 1

PHYSDEV_EOI: Final = Layout("physdev_eoi", 4, {"irq": (0, 4)})
PHYSDEV_IRQ_STATUS_QUERY: Final = Layout(
    "physdev_irq_status_query", 8, {"irq": (0, 4), "flags": (4, 4)}
)
