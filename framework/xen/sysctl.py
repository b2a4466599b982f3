"""XEN_SYSCTL_*: the host-wide calls of dom0's tools, in the subset xm used on the 970
(`info`: physinfo and sched_id; `list`: getdomaininfolist; `dmesg`: readconsole).

As Xen 3.0.4's `common/sysctl.c` reads them: privileged callers only (-EPERM), the
interface version must match (-EACCES), the whole `xen_sysctl` is copied back on success.
Unknown commands get -ENOSYS (the port's `arch_do_sysctl` default).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from framework.errors import XencommError
from framework.hw970.core import Core
from framework.hw970.memory import PAGE_SHIFT
from framework.xen import costs
from framework.xen.domain import Vcpu
from framework.xen.dominfo import domain_info
from framework.xen.public.domctl import GETDOMAININFO, XEN_SCHEDULER_CREDIT
from framework.xen.public.errno import EACCES, ENOSYS, EPERM
from framework.xen.public.sysctl import (
    SYSCTL,
    XEN_SYSCTL_INTERFACE_VERSION,
    XEN_SYSCTL_getdomaininfolist,
    XEN_SYSCTL_physinfo,
    XEN_SYSCTL_readconsole,
    XEN_SYSCTL_sched_id,
)
from framework.xen.xencomm import Xencomm, xencomm_of

if TYPE_CHECKING:
    from framework.xen.hypervisor import Hypervisor

#: One sysctl command: fills `op` (its fields by `SYSCTL` name) and returns r3.
SysctlOp = Callable[["Hypervisor", Xencomm, dict[str, int]], int]


def physinfo(xen: Hypervisor) -> dict[str, int]:
    """physinfo's fields (`SYSCTL` names) now."""
    # One thread per core and one core per socket: the 970/970FX; sockets = CPUs.
    return {
        "physinfo_threads_per_core": 1,
        "physinfo_cores_per_socket": 1,
        "physinfo_sockets_per_node": xen.ncpus,
        "physinfo_nr_nodes": 1,
        "physinfo_cpu_khz": xen.machine.config.clock_hz // 1000,
        "physinfo_total_pages": xen.alloc.total_pages,
        "physinfo_free_pages": xen.alloc.free_bytes >> PAGE_SHIFT,
        "physinfo_scrub_pages": 0,
    }


def _physinfo(xen: Hypervisor, comm: Xencomm, op: dict[str, int]) -> int:
    op.update(physinfo(xen))
    return 0


def _sched_id(xen: Hypervisor, comm: Xencomm, op: dict[str, int]) -> int:
    op["sched_id"] = XEN_SCHEDULER_CREDIT
    return 0


def _getdomaininfolist(xen: Hypervisor, comm: Xencomm, op: dict[str, int]) -> int:
    first, room = op["getdomaininfolist_first_domain"], op["getdomaininfolist_max_domains"]
    doms = [d for domid, d in sorted(xen.domains.items()) if domid >= first][:room]
    now = xen.now()
    data = b"".join(GETDOMAININFO.pack(**domain_info(d, now)) for d in doms)
    comm.copy_to_guest(op["getdomaininfolist_buffer"], data)
    op["getdomaininfolist_num_domains"] = len(doms)
    return 0


def _readconsole(xen: Hypervisor, comm: Xencomm, op: dict[str, int]) -> int:
    data = xen.conring.read(op["readconsole_count"], bool(op["readconsole_clear"]))
    comm.copy_to_guest(op["readconsole_buffer"], data)
    op["readconsole_count"] = len(data)
    return 0


SYSCTL_OPS: Final[dict[int, SysctlOp]] = {
    XEN_SYSCTL_readconsole: _readconsole,
    XEN_SYSCTL_physinfo: _physinfo,
    XEN_SYSCTL_sched_id: _sched_id,
    XEN_SYSCTL_getdomaininfolist: _getdomaininfolist,
}


def do_sysctl(xen: Hypervisor, core: Core, v: Vcpu) -> int:
    """sysctl(handle): r4 = xencomm handle of a `struct xen_sysctl`."""
    if not v.domain.privileged:
        return -EPERM
    comm = xencomm_of(xen, v.domain)
    handle = core.gpr(4)
    core.charge(costs.DOMCTL_OP)
    try:
        raw = comm.copy_from_guest(handle, SYSCTL.size)
        op = SYSCTL.unpack(raw)
        if op["interface_version"] != XEN_SYSCTL_INTERFACE_VERSION:
            return -EACCES
        body = SYSCTL_OPS.get(op["cmd"])
        if body is None:
            return -ENOSYS
        rc = body(xen, comm, op)
        out = bytearray(raw)
        for name, value in op.items():
            off, width = SYSCTL.fields[name]
            if name.startswith(("cmd", "interface")) or not _touched(name, op["cmd"]):
                continue
            out[off : off + width] = value.to_bytes(width, "big")
        comm.copy_to_guest(handle, bytes(out))
    except XencommError as err:
        return -err.errno
    return rc


_PREFIX: Final = {
    XEN_SYSCTL_readconsole: "readconsole_",
    XEN_SYSCTL_physinfo: "physinfo_",
    XEN_SYSCTL_sched_id: "sched_id",
    XEN_SYSCTL_getdomaininfolist: "getdomaininfolist_",
}


def _touched(name: str, cmd: int) -> bool:
    """Whether field `name` belongs to command `cmd`'s member of the union."""
    return name.startswith(_PREFIX[cmd])


__all__ = ["SYSCTL_OPS", "do_sysctl", "physinfo"]
