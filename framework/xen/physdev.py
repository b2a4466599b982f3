"""physdev_op for interrupts: what a Linux guest's pirq code asks Xen (x86's
`physdev.c`, which the 970 port built as its own).

Xen takes every MPIC interrupt first and acknowledges the source when it forwards it to
the domain that bound it (`Hypervisor.device_interrupt`), so no pirq waits for the guest's
EOI: irq_status_query reports no XENIRQSTAT_needs_eoi, and PHYSDEVOP_eoi is accepted and
has nothing left to do. An irq beyond the MPIC's sources is -EINVAL, as x86 checks NR_IRQS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from framework.errors import XencommError
from framework.hw970.core import Core
from framework.xen import costs
from framework.xen.domain import Vcpu
from framework.xen.public.errno import EINVAL, ENOSYS
from framework.xen.public.physdev import (
    PHYSDEV_EOI,
    PHYSDEV_IRQ_STATUS_QUERY,
    PHYSDEVOP_eoi,
    PHYSDEVOP_irq_status_query,
)
from framework.xen.xencomm import xencomm_of

if TYPE_CHECKING:
    from framework.xen.hypervisor import Hypervisor


def do_physdev_op(xen: Hypervisor, core: Core, v: Vcpu) -> int:
    """physdev_op(cmd, handle): r4 = PHYSDEVOP_*, r5 = xencomm handle of its structure."""
    cmd, handle = core.gpr(4), core.gpr(5)
    core.charge(costs.HCALL_OP)
    nsources = xen.machine.mpic.nsources
    comm = xencomm_of(xen, v.domain)
    try:
        if cmd == PHYSDEVOP_eoi:
            irq = PHYSDEV_EOI.unpack(comm.copy_from_guest(handle, PHYSDEV_EOI.size))["irq"]
            return 0 if irq < nsources else -EINVAL
        if cmd == PHYSDEVOP_irq_status_query:
            size = PHYSDEV_IRQ_STATUS_QUERY.size
            irq = PHYSDEV_IRQ_STATUS_QUERY.unpack(comm.copy_from_guest(handle, size))["irq"]
            if irq >= nsources:
                return -EINVAL
            comm.copy_to_guest(handle, PHYSDEV_IRQ_STATUS_QUERY.pack(irq=irq, flags=0))
            return 0
    except XencommError as err:
        return -err.errno
    return -ENOSYS


__all__ = ["do_physdev_op"]
