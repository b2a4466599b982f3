"""What Xen knows of its host and of itself, as `xm info` reports it: the machine's CPUs,
clock, timebase and memory (sysctl physinfo), the scheduler (sched_id) and Xen's version
strings (xen_version). Written into run.json's `machine`, so a finished run can be read
(`analysis.xm_info`, the xentrace export's timebase) without the simulator."""

from __future__ import annotations

from typing import TYPE_CHECKING

from framework.xen.public.version import (
    XEN_CAPABILITIES,
    XEN_CHANGESET,
    XEN_COMPILE_INFO,
    XEN_EXTRAVERSION,
    XEN_PAGESIZE,
    XEN_PLATFORM_PARAMETERS,
    XEN_VERSION,
)
from framework.xen.sysctl import physinfo

if TYPE_CHECKING:
    from framework.xen.hypervisor import Hypervisor

__all__ = ["host_facts"]


def _cstr(data: bytes) -> str:
    return data.split(b"\0", 1)[0].decode("ascii", "replace")


def host_facts(xen: Hypervisor) -> dict[str, int | str]:
    """The host's and Xen's fixed facts (what does not change while the run goes on)."""
    phys = physinfo(xen)
    nodes, sockets = phys["physinfo_nr_nodes"], phys["physinfo_sockets_per_node"]
    cores, threads = phys["physinfo_cores_per_socket"], phys["physinfo_threads_per_core"]
    cc = XEN_COMPILE_INFO
    return {
        "nr_cpus": nodes * sockets * cores * threads,
        "nr_nodes": nodes,
        "sockets_per_node": sockets,
        "cores_per_socket": cores,
        "threads_per_core": threads,
        "cpu_khz": phys["physinfo_cpu_khz"],
        "clock_hz": xen.machine.config.clock_hz,
        "timebase_hz": xen.timebase_hz,
        "total_pages": phys["physinfo_total_pages"],
        "xen_major": XEN_VERSION[0],
        "xen_minor": XEN_VERSION[1],
        "xen_extra": _cstr(XEN_EXTRAVERSION),
        "xen_caps": _cstr(XEN_CAPABILITIES),
        "xen_scheduler": "credit",  # sched_id: the only scheduler the port runs
        "xen_pagesize": XEN_PAGESIZE,
        "xen_virt_start": int.from_bytes(XEN_PLATFORM_PARAMETERS, "big"),
        "xen_changeset": _cstr(XEN_CHANGESET),
        "cc_compiler": _cstr(cc[0:64]),
        "cc_compile_by": _cstr(cc[64:80]),
        "cc_compile_domain": _cstr(cc[80:112]),
        "cc_compile_date": _cstr(cc[112:144]),
    }
