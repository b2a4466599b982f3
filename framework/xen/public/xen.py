"""Xen's public `xen.h` as the 970 port has it: hypercall numbers and how r3 marks them,
the VIRQs, reserved domain ids, and the shared_info / vcpu_info pages every guest maps.

Values from Xen 3.0.4's headers and `arch-powerpc.h`; every structure is declared once, as
a `Layout`, and read or written through it by Xen, the guest kernel and the tools alike.
"""

from __future__ import annotations

from typing import Final

from framework.xen.public.layout import Layout

HYPERVISOR_sched_op_compat: Final = 6
HYPERVISOR_memory_op: Final = 12
HYPERVISOR_set_timer_op: Final = 15
HYPERVISOR_xen_version: Final = 17
HYPERVISOR_console_io: Final = 18
HYPERVISOR_grant_table_op: Final = 20
HYPERVISOR_vm_assist: Final = 21
HYPERVISOR_vcpu_op: Final = 24
HYPERVISOR_sched_op: Final = 29
HYPERVISOR_event_channel_op: Final = 32
HYPERVISOR_physdev_op: Final = 33
HYPERVISOR_sysctl: Final = 35
HYPERVISOR_domctl: Final = 36

HCALL_NAMES: Final = {
    HYPERVISOR_sched_op_compat: "sched_op_compat",
    HYPERVISOR_memory_op: "memory_op",
    HYPERVISOR_set_timer_op: "set_timer_op",
    HYPERVISOR_xen_version: "xen_version",
    HYPERVISOR_console_io: "console_io",
    HYPERVISOR_grant_table_op: "grant_table_op",
    HYPERVISOR_vm_assist: "vm_assist",
    HYPERVISOR_vcpu_op: "vcpu_op",
    HYPERVISOR_sched_op: "sched_op",
    HYPERVISOR_event_channel_op: "event_channel_op",
    HYPERVISOR_physdev_op: "physdev_op",
    HYPERVISOR_sysctl: "sysctl",
    HYPERVISOR_domctl: "domctl",
}

#: Xen calls are marked by all-ones in bits 16..63 of r3 (number | (~0 << 16)).
XEN_MARK: Final = 0xFFFFFFFFFFFF0000


def xen_mark(nr: int) -> int:
    """The r3 value a guest loads to make Xen call `nr`."""
    return XEN_MARK | nr


VIRQ_TIMER: Final = 0
VIRQ_DEBUG: Final = 1
VIRQ_CONSOLE: Final = 2
VIRQ_DOM_EXC: Final = 3
VIRQ_XENOPROF: Final = 7
NR_VIRQS: Final = 24
DOMID_SELF: Final = 0x7FF0
MAX_VIRT_CPUS: Final = 32
#: First domain id reserved for special meanings (DOMID_FIRST_RESERVED); also DOMID_SELF.
DOMID_FIRST_RESERVED: Final = 0x7FF0

#: vm_assist(cmd, type): xen.h's VMASST_* (the types are x86 paging aids; common code
#: records them per domain all the same).
VMASST_CMD_enable: Final = 0
VMASST_CMD_disable: Final = 1
VMASST_TYPE_4gb_segments: Final = 0
VMASST_TYPE_4gb_segments_notify: Final = 1
VMASST_TYPE_writable_pagetables: Final = 2
VMASST_TYPE_pae_extended_cr3: Final = 3
MAX_VMASST_TYPE: Final = 3

CONSOLEIO_write: Final = 0
CONSOLEIO_read: Final = 1

VCPU_INFO: Final = Layout(
    "vcpu_info",
    48,
    {
        "evtchn_upcall_pending": (0, 1),
        "evtchn_upcall_mask": (1, 1),
        "evtchn_pending_sel": (8, 8),
        # struct vcpu_time_info (32 bytes, public/xen.h): system time now is
        # system_time + ((((tb - tsc_timestamp) << tsc_shift) * tsc_to_system_mul) >> 32);
        # on the 970 the "TSC" is the timebase.
        "time_version": (16, 4),
        "tsc_timestamp": (24, 8),
        "system_time": (32, 8),
        "tsc_to_system_mul": (40, 4),
        "tsc_shift": (44, 1),
    },
)
SHARED_INFO: Final = Layout(
    "shared_info",
    4096,
    {
        "vcpu_info": (0, 48 * MAX_VIRT_CPUS),
        "evtchn_pending": (1536, 512),
        "evtchn_mask": (2048, 512),
        "wc_version": (2560, 4),
        "wc_sec": (2564, 4),
        "wc_nsec": (2568, 4),
        "boot_timebase": (2576, 8),
    },
)
EVTCHN_PENDING_OFF: Final = 1536
EVTCHN_MASK_OFF: Final = 2048
