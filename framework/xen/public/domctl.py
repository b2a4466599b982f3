"""XEN_DOMCTL_* (`domctl.h`, interface version 4 of Xen 3.0.4): the toolstack's domain
control calls, their argument layout and the getdomaininfo flags.
"""

from __future__ import annotations

from typing import Final

from framework.xen.public.layout import Layout

XEN_DOMCTL_INTERFACE_VERSION: Final = 0x00000004
XEN_DOMCTL_createdomain: Final = 1
XEN_DOMCTL_destroydomain: Final = 2
XEN_DOMCTL_pausedomain: Final = 3
XEN_DOMCTL_unpausedomain: Final = 4
XEN_DOMCTL_getdomaininfo: Final = 5
XEN_DOMCTL_setvcpuaffinity: Final = 9
XEN_DOMCTL_max_mem: Final = 11
XEN_DOMCTL_setvcpucontext: Final = 12
XEN_DOMCTL_getvcpuinfo: Final = 14
XEN_DOMCTL_max_vcpus: Final = 15
XEN_DOMCTL_scheduler_op: Final = 16
XEN_DOMCTL_getvcpuaffinity: Final = 25
XEN_DOMCTL_real_mode_area: Final = 26  # PowerPC only: allocate the RMA (log2 size)
#: xen970 extension standing in for privcmd foreign mapping until the foreign area is
#: modelled: copy a dom0 buffer (xencomm handle) into the target's guest-physical memory.
XEN_DOMCTL_xen970_copy_to_domain: Final = 0x970
# -- save and restore (issue 16; PPC never had them: see docs/save-format.md) -------------
XEN_DOMCTL_getvcpucontext: Final = 13  # Xen 3.1's number: a VCPU's vcpu_guest_context
XEN_DOMCTL_resumedomain: Final = 27  # Xen 3.1's number: a suspended domain runs again
#: xen970: copy up to SAVE_BATCH_PAGES pages of the target, from pfn `copy_first_pfn`,
#: into a dom0 buffer (stands in for privcmd foreign mapping, as copy_to_domain does).
XEN_DOMCTL_xen970_copy_from_domain: Final = 0x971
#: xen970: the model state Xen keeps per VCPU besides vcpu_guest_context (XEN970_VCPU_STATE).
XEN_DOMCTL_xen970_getvcpustate: Final = 0x972
XEN_DOMCTL_xen970_setvcpustate: Final = 0x973
#: Pages per copy_from_domain (x86 Xen 3.1's MAX_BATCH_SIZE): 4 MiB, dom0's BUF.
SAVE_BATCH_PAGES: Final = 1024
XEN_SCHEDULER_CREDIT: Final = 5
XEN_DOMCTL_SCHEDOP_putinfo: Final = 0
#: scheduler_op putinfo: the weight and the cap that mean "leave it as it is" (credit's
#: csched_dom_cntl: weight 0 is ignored, cap (uint16_t)~0U is ignored).
WEIGHT_UNCHANGED: Final = 0
CAP_UNCHANGED: Final = 0xFFFF
XEN_DOMCTL_SCHEDOP_getinfo: Final = 1

DOMCTL_NAMES: Final = {
    XEN_DOMCTL_createdomain: "createdomain",
    XEN_DOMCTL_destroydomain: "destroydomain",
    XEN_DOMCTL_pausedomain: "pausedomain",
    XEN_DOMCTL_unpausedomain: "unpausedomain",
    XEN_DOMCTL_getdomaininfo: "getdomaininfo",
    XEN_DOMCTL_setvcpuaffinity: "setvcpuaffinity",
    XEN_DOMCTL_max_mem: "max_mem",
    XEN_DOMCTL_setvcpucontext: "setvcpucontext",
    XEN_DOMCTL_max_vcpus: "max_vcpus",
    XEN_DOMCTL_scheduler_op: "scheduler_op",
    XEN_DOMCTL_real_mode_area: "real_mode_area",
    XEN_DOMCTL_getvcpuinfo: "getvcpuinfo",
    XEN_DOMCTL_getvcpuaffinity: "getvcpuaffinity",
    XEN_DOMCTL_xen970_copy_to_domain: "xen970_copy_to_domain",
    XEN_DOMCTL_getvcpucontext: "getvcpucontext",
    XEN_DOMCTL_resumedomain: "resumedomain",
    XEN_DOMCTL_xen970_copy_from_domain: "xen970_copy_from_domain",
    XEN_DOMCTL_xen970_getvcpustate: "xen970_getvcpustate",
    XEN_DOMCTL_xen970_setvcpustate: "xen970_setvcpustate",
}

# struct xen_domctl: cmd, interface_version, domain, then a union (8-aligned: it holds
# u64s and 64-bit handles) at offset 16, padded to 128 bytes: 144 in all.
DOMCTL: Final = Layout(
    "xen_domctl",
    144,
    {
        "cmd": (0, 4),
        "interface_version": (4, 4),
        "domain": (8, 2),
        # union members (offset 16):
        "create_ssidref": (16, 4),
        "create_flags": (36, 4),
        "max_vcpus": (16, 4),
        "max_memkb": (16, 8),
        "rma_log": (16, 4),
        "vcpu": (16, 4),
        "vcpu_ctxt": (24, 8),  # setvcpucontext: xencomm handle of vcpu_guest_context
        "cpumap_bitmap": (24, 8),  # setvcpuaffinity: xencomm handle of the cpu bitmap
        "cpumap_nr_cpus": (32, 4),
        "sched_id": (16, 4),
        "sched_cmd": (20, 4),
        "sched_weight": (24, 2),
        "sched_cap": (26, 2),
        # getdomaininfo: struct xen_domctl_getdomaininfo (domid_t domain, then u32 flags).
        "info_domain": (16, 2),
        "info_flags": (20, 4),
        "info_tot_pages": (24, 8),
        "info_max_pages": (32, 8),
        "info_shared_info_frame": (40, 8),
        "info_cpu_time": (48, 8),
        "info_nr_online_vcpus": (56, 4),
        "info_max_vcpu_id": (60, 4),
        "info_ssidref": (64, 4),
        # getvcpuinfo: struct xen_domctl_getvcpuinfo (u32 vcpu; u8 online, blocked,
        # running; u64 cpu_time at 8; u32 cpu at 16).
        "vcpuinfo_online": (20, 1),
        "vcpuinfo_blocked": (21, 1),
        "vcpuinfo_running": (22, 1),
        "vcpuinfo_cpu_time": (24, 8),
        "vcpuinfo_cpu": (32, 4),
        "copy_dst_gpa": (16, 8),
        "copy_nbytes": (24, 8),
        "copy_src": (32, 8),
        # copy_from_domain: first pfn, page count, xencomm handle of dom0's buffer.
        "copy_first_pfn": (16, 8),
        "copy_nr_pages": (24, 8),
        "copy_dst": (32, 8),
        # get/setvcpustate: vcpu at 16, the handle of an XEN970_VCPU_STATE at 24.
        "vcpu_state": (24, 8),
    },
)
DOMINF_dying: Final = 1 << 0
DOMINF_hvm_guest: Final = 1 << 1
DOMINF_shutdown: Final = 1 << 2
DOMINF_paused: Final = 1 << 3
DOMINF_blocked: Final = 1 << 4
DOMINF_running: Final = 1 << 5
#: The CPU of VCPU 0 is in flags bits 8..15, the shutdown reason in bits 16..23.
XEN_DOMINF_cpushift: Final = 8
XEN_DOMINF_shutdownshift: Final = 16

#: struct xen_domctl_getdomaininfo on its own: the element of sysctl getdomaininfolist's
#: buffer (88 bytes: u64 alignment after the 16-byte handle).
GETDOMAININFO: Final = Layout(
    "xen_domctl_getdomaininfo",
    88,
    {
        "domain": (0, 2),
        "flags": (4, 4),
        "tot_pages": (8, 8),
        "max_pages": (16, 8),
        "shared_info_frame": (24, 8),
        "cpu_time": (32, 8),
        "nr_online_vcpus": (40, 4),
        "max_vcpu_id": (44, 4),
        "ssidref": (48, 4),  # then xen_domain_handle_t handle[16] at 52
    },
)
