"""XENMEM_*: a domain's memory reservation grows in 16 MiB extents (common/memory.c).

On the 970 port memory beyond the RMA comes only as extents of order 12 (16 MiB, one large
page); a long request is preempted every `MEMOP_BATCH` extents with a continuation whose
progress rides in the command's upper bits, as Xen encodes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from framework.hw970.core import Core
from framework.xen import costs
from framework.xen.continuation import CONTINUATION
from framework.xen.domain import Vcpu, target_domain
from framework.xen.mm import AllocError
from framework.xen.public.errno import EFAULT, EINVAL, ENOMEM, ENOSYS, ESRCH
from framework.xen.public.memory import (
    MEMORY_RESERVATION,
    XENMEM_increase_reservation,
    XENMEM_populate_physmap,
)
from framework.xen.xencomm import XencommError, xencomm_of

if TYPE_CHECKING:
    from framework.xen.hypervisor import Hypervisor

#: Xen's continuation encoding for memory_op: progress in the cmd's upper bits.
MEMOP_EXTENT_SHIFT: Final = 4
MEMOP_BATCH: Final = 4  # extents handled per pass before a continuation


def do_memory_op(xen: Hypervisor, core: Core, v: Vcpu) -> int:
    raw_cmd, handle = core.gpr(4), core.gpr(5)
    cmd = raw_cmd & ((1 << MEMOP_EXTENT_SHIFT) - 1)
    start = raw_cmd >> MEMOP_EXTENT_SHIFT
    if cmd not in (XENMEM_increase_reservation, XENMEM_populate_physmap):
        return -ENOSYS
    comm = xencomm_of(xen, v.domain)
    try:
        arg = MEMORY_RESERVATION.unpack(comm.copy_from_guest(handle, MEMORY_RESERVATION.size))
    except XencommError as comm_err:
        return -comm_err.errno
    target = target_domain(v.domain, xen.domains, arg["domid"])
    if target is None:
        return -ESRCH
    if arg["extent_order"] != 12:
        return -EINVAL  # memory beyond the RMA comes in 16 MiB extents only
    total = arg["nr_extents"]
    if start >= total or total > (1 << 64) - 1 >> MEMOP_EXTENT_SHIFT:
        return start  # a forged continuation or an unencodable count: Xen does nothing
    if target.phys is None:
        return -EINVAL
    batch = min(MEMOP_BATCH, total - start)
    if (target.phys.nr_pages + batch * 4096) > target.max_pages > 0:
        return start if start else -ENOMEM
    try:
        pfns = xen.add_extents(target, batch)
    except AllocError as alloc_err:
        xen.alloc_failure(target, alloc_err)
        return start if start else -ENOMEM
    core.charge(costs.DOMAIN_BUILD_PER_MIB * 16 * batch)
    if arg["extent_start"]:
        try:
            data = b"".join(p.to_bytes(8, "big") for p in pfns)
            comm.copy_to_guest(arg["extent_start"], data, offset=8 * start)
        except XencommError:
            return -EFAULT
    done = start + batch
    if done < total:
        core.set_gpr(4, cmd | (done << MEMOP_EXTENT_SHIFT))
        return CONTINUATION
    return total


__all__ = ["MEMOP_BATCH", "MEMOP_EXTENT_SHIFT", "do_memory_op"]
