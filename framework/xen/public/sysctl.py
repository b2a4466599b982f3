"""XEN_SYSCTL_* (`sysctl.h`, interface version 2 of Xen 3.0.4): the host-wide calls xm's
`info`, `list` and `dmesg` make through libxc, with the argument layout Xen reads.

`struct xen_sysctl` is cmd, interface_version, then a union aligned to 8 bytes (it holds
u64 fields and 64-bit guest handles on the LP64 port) and padded to 128 bytes.
"""

from __future__ import annotations

from typing import Final

from framework.xen.public.layout import Layout

XEN_SYSCTL_INTERFACE_VERSION: Final = 0x00000002
XEN_SYSCTL_readconsole: Final = 1
XEN_SYSCTL_tbuf_op: Final = 2
XEN_SYSCTL_physinfo: Final = 3
XEN_SYSCTL_sched_id: Final = 4
XEN_SYSCTL_perfc_op: Final = 5
XEN_SYSCTL_getdomaininfolist: Final = 6


SYSCTL: Final = Layout(
    "xen_sysctl",
    136,
    {
        "cmd": (0, 4),
        "interface_version": (4, 4),
        # union members (offset 8):
        "readconsole_clear": (8, 4),
        "readconsole_buffer": (16, 8),  # guest handle of char
        "readconsole_count": (24, 4),  # in: buffer size; out: bytes used
        "physinfo_threads_per_core": (8, 4),
        "physinfo_cores_per_socket": (12, 4),
        "physinfo_sockets_per_node": (16, 4),
        "physinfo_nr_nodes": (20, 4),
        "physinfo_cpu_khz": (24, 4),
        "physinfo_total_pages": (32, 8),
        "physinfo_free_pages": (40, 8),
        "physinfo_scrub_pages": (48, 8),  # then u32 hw_cap[8] at 56
        "sched_id": (8, 4),
        "getdomaininfolist_first_domain": (8, 2),
        "getdomaininfolist_max_domains": (12, 4),
        "getdomaininfolist_buffer": (16, 8),  # guest handle of xen_domctl_getdomaininfo
        "getdomaininfolist_num_domains": (24, 4),
    },
)
