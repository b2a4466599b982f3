"""`struct xen_domctl_getdomaininfo` as Xen fills it (common/domctl.c getdomaininfo): one
function shared by domctl getdomaininfo and sysctl getdomaininfolist, so `xm list` sees
the same record whichever call libxc makes; and getvcpuinfo's per-VCPU record.

CPU time is Xen 3.1's `vcpu_runstate_get`: the time the VCPU has spent running, with the
stretch it is running now counted up to the moment of the call (not the slice-granular
`cpu_time_ns` the scheduler keeps)."""

from __future__ import annotations

from framework.xen.domain import Domain, DomainState, Vcpu
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


def running_ns(v: Vcpu, now: int) -> int:
    """`vcpu_runstate_get(v).time[RUNSTATE_running]` at `now`."""
    if v.runstate == Runstate.RUNNING:
        return v.running_ns + max(now - v.runstate_since, 0)
    return v.running_ns


def vcpu_info(v: Vcpu, now: int) -> dict[str, int]:
    """getvcpuinfo's fields (`DOMCTL` names without `vcpuinfo_`) of one VCPU at `now`."""
    return {
        "online": int(v.is_up),
        "blocked": int(v.runstate == Runstate.BLOCKED),
        "running": int(v.runstate == Runstate.RUNNING),
        "cpu_time": running_ns(v, now),
        "cpu": v.processor,
    }


def domain_info(dom: Domain, now: int) -> dict[str, int]:
    """The getdomaininfo fields (`GETDOMAININFO` names) of `dom` at `now`."""
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
        "cpu_time": sum(running_ns(x, now) for x in vcpus),
        "nr_online_vcpus": len(online),
        "max_vcpu_id": max(len(vcpus) - 1, 0),
    }


__all__ = ["domain_info", "running_ns", "vcpu_info"]
