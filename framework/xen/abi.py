"""The Xen/PowerPC guest ABI: hypercall numbers, commands, error codes and the layouts of
structures that live in guest memory (shared_info, vcpu_info, op arguments).

Values from Xen 3.0.4's public headers (`xen.h`, `event_channel.h`, `sched.h`, `vcpu.h`,
`domctl.h`, `memory.h`, `arch-powerpc.h`) and XEN-PPC-FACTS.md.  Each structure is declared
once here and read/written through `Layout`, by Xen, the guest kernel and the tools alike.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

from framework.hw970.memory import MachineMemory

# --- hypercall numbers (xen.h) -------------------------------------------------------
HYPERVISOR_sched_op_compat = 6
HYPERVISOR_memory_op = 12
HYPERVISOR_set_timer_op = 15
HYPERVISOR_xen_version = 17
HYPERVISOR_console_io = 18
HYPERVISOR_grant_table_op = 20
HYPERVISOR_vm_assist = 21
HYPERVISOR_vcpu_op = 24
HYPERVISOR_sched_op = 29
HYPERVISOR_event_channel_op = 32
HYPERVISOR_physdev_op = 33
HYPERVISOR_sysctl = 35
HYPERVISOR_domctl = 36

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


# --- PAPR hcalls (page table and TCE) ------------------------------------------------
H_REMOVE = 0x04
H_ENTER = 0x08
H_READ = 0x0C
H_CLEAR_MOD = 0x10
H_CLEAR_REF = 0x14
H_PROTECT = 0x18
H_GET_TCE = 0x1C
H_PUT_TCE = 0x20
H_SET_DABR = 0x28
H_GET_TERM_CHAR = 0x54
H_PUT_TERM_CHAR = 0x58
PAPR_MAX_TOKEN: Final = 0x1D4
PAPR_NAMES: Final = {
    H_REMOVE: "H_REMOVE",
    H_ENTER: "H_ENTER",
    H_READ: "H_READ",
    H_CLEAR_MOD: "H_CLEAR_MOD",
    H_CLEAR_REF: "H_CLEAR_REF",
    H_PROTECT: "H_PROTECT",
    H_GET_TCE: "H_GET_TCE",
    H_PUT_TCE: "H_PUT_TCE",
    H_SET_DABR: "H_SET_DABR",
    H_GET_TERM_CHAR: "H_GET_TERM_CHAR",
    H_PUT_TERM_CHAR: "H_PUT_TERM_CHAR",
}
H_SUCCESS: Final = 0
H_HARDWARE: Final = -1
H_FUNCTION: Final = -2
H_PRIVILEGE: Final = -3
H_PARAMETER: Final = -4
H_PTEG_FULL: Final = -6
H_NOT_FOUND: Final = -7
# H_ENTER/H_REMOVE flags (PAPR): in the flags argument (r4).
H_EXACT: Final = 1 << (63 - 56)
H_AVPN: Final = 1 << (63 - 32)
H_ANDCOND: Final = 1 << (63 - 33)
H_ZERO_PAGE: Final = 1 << (63 - 48)

# --- errno (Xen returns -errno) ------------------------------------------------------
EPERM: Final = 1
ENOENT: Final = 2
ESRCH: Final = 3
EINTR: Final = 4
ENOMEM: Final = 12
EFAULT: Final = 14
EBUSY: Final = 16
EEXIST: Final = 17
EINVAL: Final = 22
ENOSPC: Final = 28
ENOSYS: Final = 38
EAGAIN: Final = 11
EACCES: Final = 13

# --- sched_op (sched.h) --------------------------------------------------------------
SCHEDOP_yield = 0
SCHEDOP_block = 1
SCHEDOP_shutdown = 2
SCHEDOP_poll = 3
SHUTDOWN_poweroff = 0
SHUTDOWN_reboot = 1
SHUTDOWN_suspend = 2
SHUTDOWN_crash = 3
SHUTDOWN_NAMES: Final = {0: "poweroff", 1: "reboot", 2: "suspend", 3: "crash"}

# --- vcpu_op (vcpu.h) ----------------------------------------------------------------
VCPUOP_initialise = 0
VCPUOP_up = 1
VCPUOP_down = 2
VCPUOP_is_up = 3

# --- xen_version ---------------------------------------------------------------------
XENVER_version = 0
XENVER_extraversion = 1
XENVER_capabilities = 3
XENVER_pagesize = 7
XEN_VERSION: Final = (3, 0)
XEN_EXTRAVERSION: Final = b".4-xen970\0"
XEN_CAPABILITIES: Final = b"xen-3.0-powerpc64\0"

# --- console_io ----------------------------------------------------------------------
CONSOLEIO_write = 0
CONSOLEIO_read = 1

# --- event channels (event_channel.h) ------------------------------------------------
EVTCHNOP_bind_interdomain = 0
EVTCHNOP_bind_virq = 1
EVTCHNOP_bind_pirq = 2
EVTCHNOP_close = 3
EVTCHNOP_send = 4
EVTCHNOP_status = 5
EVTCHNOP_alloc_unbound = 6
EVTCHNOP_bind_ipi = 7
EVTCHNOP_bind_vcpu = 8
EVTCHNOP_unmask = 9
EVTCHNSTAT_closed = 0
EVTCHNSTAT_unbound = 1
EVTCHNSTAT_interdomain = 2
EVTCHNSTAT_pirq = 3
EVTCHNSTAT_virq = 4
EVTCHNSTAT_ipi = 5
NR_EVENT_CHANNELS: Final = 4096
VIRQ_TIMER: Final = 0
VIRQ_DEBUG: Final = 1
VIRQ_CONSOLE: Final = 2
VIRQ_DOM_EXC: Final = 3
NR_VIRQS: Final = 24
DOMID_SELF: Final = 0x7FF0

MAX_VIRT_CPUS: Final = 32

# --- memory_op (memory.h) ------------------------------------------------------------
XENMEM_increase_reservation = 0
XENMEM_decrease_reservation = 1
XENMEM_populate_physmap = 6

# --- domctl (domctl.h; XEN_DOMCTL_INTERFACE_VERSION of 3.0.4) -------------------------
XEN_DOMCTL_INTERFACE_VERSION: Final = 0x00000004
XEN_DOMCTL_createdomain = 1
XEN_DOMCTL_destroydomain = 2
XEN_DOMCTL_pausedomain = 3
XEN_DOMCTL_unpausedomain = 4
XEN_DOMCTL_getdomaininfo = 5
XEN_DOMCTL_setvcpuaffinity = 9
XEN_DOMCTL_max_mem = 11
XEN_DOMCTL_setvcpucontext = 12
XEN_DOMCTL_max_vcpus = 15
XEN_DOMCTL_scheduler_op = 16
XEN_DOMCTL_real_mode_area = 26  # PowerPC only: allocate the RMA (log2 size)
#: xen970 extension standing in for privcmd foreign mapping until the foreign area is
#: modelled: copy a dom0 buffer (xencomm handle) into the target's guest-physical memory.
XEN_DOMCTL_xen970_copy_to_domain = 0x970
XEN_SCHEDULER_CREDIT: Final = 5
XEN_DOMCTL_SCHEDOP_putinfo = 0
XEN_DOMCTL_SCHEDOP_getinfo = 1

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
    XEN_DOMCTL_xen970_copy_to_domain: "xen970_copy_to_domain",
}


# --- layouts -------------------------------------------------------------------------
_STRUCT_CODES: Final = {1: "B", 2: "H", 4: "I", 8: "Q"}


@dataclass(frozen=True)
class Layout:
    """A big-endian structure in guest memory: field name -> (offset, width in bytes)."""

    name: str
    size: int
    fields: dict[str, tuple[int, int]]
    #: The whole structure as one `struct.Struct`, when every field is 1/2/4/8 bytes and
    #: none overlap (pack/unpack run per ring entry and per hypercall argument).
    _codec: struct.Struct | None = field(init=False, repr=False, compare=False)
    _masks: tuple[tuple[str, int], ...] = field(init=False, repr=False, compare=False)
    _names: tuple[str, ...] | None = field(init=False, repr=False, compare=False)
    #: A structure with unions (overlapping fields) as layers of non-overlapping fields,
    #: each one `struct.Struct`, when every field is 1/2/4/8 bytes (gnttab_copy's
    #: ref/gmfn unions, per grant copy).
    _layers: tuple[tuple[struct.Struct, tuple[str, ...]], ...] | None = field(
        init=False, repr=False, compare=False
    )
    #: Per field: its one-value struct, offset and mask (packing a structure with unions
    #: writes only the fields given).
    _field_codecs: dict[str, tuple[struct.Struct, int, int]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        order = sorted(self.fields.items(), key=lambda kv: kv[1][0])
        fmt, pos = ">", 0
        for _name, (off, width) in order:
            if width not in _STRUCT_CODES or off < pos:
                fmt = ""
                break
            fmt += f"{off - pos}x" * (off > pos) + _STRUCT_CODES[width]
            pos = off + width
        if fmt and pos <= self.size:
            fmt += f"{self.size - pos}x" * (self.size > pos)
            object.__setattr__(self, "_codec", struct.Struct(fmt))
        else:
            object.__setattr__(self, "_codec", None)
        masks = tuple((name, (1 << (8 * width)) - 1) for name, (_off, width) in order)
        object.__setattr__(self, "_masks", masks)
        # unpack keeps the declaration order of `fields`; the fast path needs it to be
        # the offset order too (true of every layout here).
        names = tuple(name for name, _ in order)
        same_order = names == tuple(self.fields)
        object.__setattr__(self, "_names", names if same_order else None)
        object.__setattr__(self, "_layers", _union_layers(order, self.size))
        object.__setattr__(
            self,
            "_field_codecs",
            {
                name: (struct.Struct(">" + _STRUCT_CODES[width]), off, (1 << (8 * width)) - 1)
                for name, (off, width) in order
                if width in _STRUCT_CODES
            },
        )

    def offset(self, field: str) -> int:
        return self.fields[field][0]

    def read(self, mem: MachineMemory, base: int, field: str) -> int:
        off, width = self.fields[field]
        return int.from_bytes(mem.read(base + off, width), "big")

    def write(self, mem: MachineMemory, base: int, field: str, value: int) -> None:
        off, width = self.fields[field]
        mem.write(base + off, (value & ((1 << (8 * width)) - 1)).to_bytes(width, "big"))

    def pack(self, **values: int) -> bytes:
        """The structure's bytes with the given fields set (others zero)."""
        codec = self._codec
        if codec is not None:
            fields = self.fields
            for name in values:
                if name not in fields:
                    raise KeyError(name)
            return codec.pack(*[values.get(name, 0) & mask for name, mask in self._masks])
        buf = bytearray(self.size)
        codecs = self._field_codecs
        for name, value in values.items():
            one = codecs.get(name)
            if one is not None:
                one[0].pack_into(buf, one[1], value & one[2])
                continue
            off, width = self.fields[name]
            buf[off : off + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "big")
        return bytes(buf)

    def unpack(self, data: bytes) -> dict[str, int]:
        """Every field's value; `data` may run past the structure (a ring slot, a page)."""
        codec, names = self._codec, self._names
        if len(data) >= self.size:
            if codec is not None and names is not None:
                values = codec.unpack_from(data)
                return {name: value for name, value in zip(names, values)}
            layers = self._layers
            if layers is not None:
                found: dict[str, int] = {}
                for layer, layer_names in layers:
                    for name, value in zip(layer_names, layer.unpack_from(data)):
                        found[name] = value
                return {name: found[name] for name in self.fields}
        return {
            name: int.from_bytes(data[off : off + width], "big")
            for name, (off, width) in self.fields.items()
        }


def _union_layers(
    order: list[tuple[str, tuple[int, int]]], size: int
) -> tuple[tuple[struct.Struct, tuple[str, ...]], ...] | None:
    """Fields (in offset order) dealt into layers whose members do not overlap, each
    layer as one struct; None if a field is not 1/2/4/8 bytes or runs past `size`."""
    layers: list[list[tuple[str, int, int]]] = []
    for name, (off, width) in order:
        if width not in _STRUCT_CODES or off + width > size:
            return None
        for layer in layers:
            _last, last_off, last_width = layer[-1]
            if last_off + last_width <= off:
                layer.append((name, off, width))
                break
        else:
            layers.append([(name, off, width)])
    out = []
    for layer in layers:
        fmt, pos = ">", 0
        for _name, off, width in layer:
            fmt += f"{off - pos}x" * (off > pos) + _STRUCT_CODES[width]
            pos = off + width
        out.append((struct.Struct(fmt), tuple(name for name, _off, _width in layer)))
    return tuple(out)


VCPU_INFO: Final = Layout(
    "vcpu_info",
    48,
    {
        "evtchn_upcall_pending": (0, 1),
        "evtchn_upcall_mask": (1, 1),
        "evtchn_pending_sel": (8, 8),
        "time_version": (16, 4),
        "tsc_timestamp": (24, 8),
        "system_time": (32, 8),
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

EVTCHN_ALLOC_UNBOUND: Final = Layout(
    "evtchn_alloc_unbound", 8, {"dom": (0, 2), "remote_dom": (2, 2), "port": (4, 4)}
)
EVTCHN_BIND_INTERDOMAIN: Final = Layout(
    "evtchn_bind_interdomain",
    12,
    {"remote_dom": (0, 2), "remote_port": (4, 4), "local_port": (8, 4)},
)
EVTCHN_BIND_VIRQ: Final = Layout(
    "evtchn_bind_virq", 12, {"virq": (0, 4), "vcpu": (4, 4), "port": (8, 4)}
)
EVTCHN_BIND_PIRQ: Final = Layout(
    "evtchn_bind_pirq", 12, {"pirq": (0, 4), "flags": (4, 4), "port": (8, 4)}
)
EVTCHN_BIND_IPI: Final = Layout("evtchn_bind_ipi", 8, {"vcpu": (0, 4), "port": (4, 4)})
EVTCHN_PORT: Final = Layout("evtchn_port", 4, {"port": (0, 4)})  # send, close, unmask
EVTCHN_BIND_VCPU: Final = Layout("evtchn_bind_vcpu", 8, {"port": (0, 4), "vcpu": (4, 4)})
EVTCHN_STATUS: Final = Layout(
    "evtchn_status",
    24,
    {
        "dom": (0, 2),
        "port": (4, 4),
        "status": (8, 4),
        "vcpu": (12, 4),
        "u_dom": (16, 2),
        "u_port": (20, 4),
        "u_virq": (16, 4),
    },
)
SCHED_SHUTDOWN: Final = Layout("sched_shutdown", 4, {"reason": (0, 4)})
SCHED_POLL: Final = Layout(
    "sched_poll", 24, {"ports": (0, 8), "nr_ports": (8, 4), "timeout": (16, 8)}
)
MEMORY_RESERVATION: Final = Layout(
    "xen_memory_reservation",
    32,
    {
        "extent_start": (0, 8),
        "nr_extents": (8, 8),
        "extent_order": (16, 4),
        "address_bits": (20, 4),
        "domid": (24, 2),
    },
)
# struct xen_domctl: cmd, interface_version, domain, then a union at offset 8.
DOMCTL: Final = Layout(
    "xen_domctl",
    128,
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
        "info_flags": (16, 4),
        "info_tot_pages": (24, 8),
        "info_max_pages": (32, 8),
        "info_cpu_time": (48, 8),
        "info_nr_online_vcpus": (56, 4),
        "info_max_vcpu_id": (60, 4),
        "copy_dst_gpa": (16, 8),
        "copy_nbytes": (24, 8),
        "copy_src": (32, 8),
    },
)
DOMINF_dying = 1 << 0
DOMINF_shutdown = 1 << 2
DOMINF_paused = 1 << 3
DOMINF_blocked = 1 << 4
DOMINF_running = 1 << 5

# vcpu_guest_context (arch-powerpc.h): cpu_user_regs then sdr1.
VCPU_GUEST_CONTEXT: Final = Layout(
    "vcpu_guest_context",
    352,
    {
        **{f"gpr{i}": (8 * i, 8) for i in range(32)},
        "lr": (256, 8),
        "ctr": (264, 8),
        "srr0": (272, 8),
        "srr1": (280, 8),
        "pc": (288, 8),
        "msr": (296, 8),
        "fpscr": (304, 8),
        "xer": (312, 8),
        "hid4": (320, 8),
        "dar": (328, 8),
        "dsisr": (336, 4),
        "cr": (340, 4),
        "sdr1": (344, 8),
    },
)
