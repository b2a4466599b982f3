"""`struct xen_domctl_getdomaininfo` as Xen fills it (common/domctl.c getdomaininfo): one
function shared by domctl getdomaininfo and sysctl getdomaininfolist, so `xm list` sees
the same record whichever call libxc makes."""

from __future__ import annotations

from framework.xen.domain import Domain, DomainState
from framework.xen.public.domctl import (
    DOMINF_blocked,
    DOMINF_dying,
    DOMINF_paused,
    DOMINF_running,
    DOMINF_shutdown,
    XEN_DOMINF_cpushift,
    XEN_DOMINF_shutdownshift,
)
from framework.xen.public.vcpu import Runstate


def domain_info(dom: Domain) -> dict[str, int]:
    """The getdomaininfo fields (`GETDOMAININFO` names) of `dom`."""
    vcpus = dom.vcpus
    running = any(x.runstate == Runstate.RUNNING for x in vcpus)
    flags = DOMINF_running if running else 0
    if dom.state == DomainState.DYING:
        flags |= DOMINF_dying
    if dom.state == DomainState.SHUTDOWN:
        flags |= DOMINF_shutdown | (dom.shutdown_reason or 0) << XEN_DOMINF_shutdownshift
    if dom.state in (DomainState.PAUSED, DomainState.CREATED):
        flags |= DOMINF_paused
    online = [x for x in vcpus if x.is_up]
    if online and not running and all(x.runstate == Runstate.BLOCKED for x in online):
        flags |= DOMINF_blocked
    if vcpus:
        flags |= (vcpus[0].processor & 0xFF) << XEN_DOMINF_cpushift
    si_frame = (dom.rma_size >> 12) - 1 if dom.rma_size else 0  # last page of the RMA
    return {
        "domain": dom.domid,
        "flags": flags,
        "tot_pages": dom.tot_pages,
        "max_pages": dom.max_pages,
        "shared_info_frame": si_frame,
        "cpu_time": sum(x.cpu_time_ns for x in vcpus),
        "nr_online_vcpus": len(online),
        "max_vcpu_id": max(len(vcpus) - 1, 0),
    }


__all__ = ["domain_info"]
