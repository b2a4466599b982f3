"""The call generator: one biased hostile call per draw, every hypercall and sub-op.

Every Xen hypercall and PAPR hcall of the port is drawn, with every sub-op number it
knows, some it does not and numbers far beyond; structures get their fields from
`values.Picker` (domain ids, frames, refs, ports, counts, timeouts), the rest garbage.

Left out on purpose, as they only end the fuzzing domain itself (their whole effect is its
own shutdown): sched_op(SCHEDOP_shutdown) with a readable argument,
sched_op_compat(SCHEDOP_shutdown), and H_REMOVE/H_PROTECT/H_READ/H_CLEAR_* of the
fuzzer's own 16 MiB page table entries (the kernel's linear map, which its program runs
in: another index is drawn instead), and a privileged fuzzer's domctl setvcpucontext of
its own VCPUs (a VCPU it then brings up runs the garbage context and crashes it).  For a privileged fuzzer (dom0), the calls by which
dom0 may legitimately change another domain never name a victim: the domctl sub-ops in
`CHANGES_OTHERS`, memory_op on another domain's reservation, and a grant copy into
another domain's frame by frame number.  They still run against the domains dom0 created
itself during the session and against ids that name no domain.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Final

from framework.xen.public.domctl import (
    DOMCTL,
    XEN_DOMCTL_INTERFACE_VERSION,
    XEN_SCHEDULER_CREDIT,
    XEN_DOMCTL_createdomain,
    XEN_DOMCTL_destroydomain,
    XEN_DOMCTL_getdomaininfo,
    XEN_DOMCTL_max_mem,
    XEN_DOMCTL_max_vcpus,
    XEN_DOMCTL_pausedomain,
    XEN_DOMCTL_real_mode_area,
    XEN_DOMCTL_scheduler_op,
    XEN_DOMCTL_setvcpuaffinity,
    XEN_DOMCTL_setvcpucontext,
    XEN_DOMCTL_unpausedomain,
    XEN_DOMCTL_xen970_copy_to_domain,
)
from framework.xen.public.event_channel import (
    EVTCHN_ALLOC_UNBOUND,
    EVTCHN_BIND_INTERDOMAIN,
    EVTCHN_BIND_IPI,
    EVTCHN_BIND_PIRQ,
    EVTCHN_BIND_VCPU,
    EVTCHN_BIND_VIRQ,
    EVTCHN_PORT,
    EVTCHN_STATUS,
    EVTCHNOP_alloc_unbound,
    EVTCHNOP_bind_interdomain,
    EVTCHNOP_bind_ipi,
    EVTCHNOP_bind_pirq,
    EVTCHNOP_bind_vcpu,
    EVTCHNOP_bind_virq,
    EVTCHNOP_close,
    EVTCHNOP_send,
    EVTCHNOP_status,
    EVTCHNOP_unmask,
)
from framework.xen.public.grant_table import (
    GNTTAB_COPY,
    GNTTAB_MAP_GRANT_REF,
    GNTTAB_QUERY_SIZE,
    GNTTAB_SETUP_TABLE,
    GNTTAB_TRANSFER,
    GNTTAB_UNMAP_GRANT_REF,
    GNTTABOP_copy,
    GNTTABOP_map_grant_ref,
    GNTTABOP_query_size,
    GNTTABOP_setup_table,
    GNTTABOP_transfer,
    GNTTABOP_unmap_grant_ref,
)
from framework.xen.public.layout import Layout
from framework.xen.public.memory import MEMORY_RESERVATION
from framework.xen.public.papr import (
    H_ANDCOND,
    H_AVPN,
    H_CLEAR_MOD,
    H_CLEAR_REF,
    H_ENTER,
    H_EXACT,
    H_GET_TCE,
    H_GET_TERM_CHAR,
    H_PROTECT,
    H_PUT_TCE,
    H_PUT_TERM_CHAR,
    H_READ,
    H_REMOVE,
    H_SET_DABR,
    H_ZERO_PAGE,
    PAPR_MAX_TOKEN,
)
from framework.xen.public.physdev import PHYSDEV_EOI
from framework.xen.public.sched import SCHED_POLL, SCHEDOP_poll, SCHEDOP_shutdown
from framework.xen.public.sysctl import SYSCTL, XEN_SYSCTL_INTERFACE_VERSION
from framework.xen.public.vcpu import VCPU_GUEST_CONTEXT
from framework.xen.public.xen import (
    XEN_MARK,
    HYPERVISOR_console_io,
    HYPERVISOR_domctl,
    HYPERVISOR_event_channel_op,
    HYPERVISOR_grant_table_op,
    HYPERVISOR_memory_op,
    HYPERVISOR_physdev_op,
    HYPERVISOR_sched_op,
    HYPERVISOR_sched_op_compat,
    HYPERVISOR_set_timer_op,
    HYPERVISOR_sysctl,
    HYPERVISOR_vcpu_op,
    HYPERVISOR_vm_assist,
    HYPERVISOR_xen_version,
    xen_mark,
)

from .call import NR_ARGS, Call
from .ppc import SC_1, word_allowed
from .values import MASK64, Picker
from .world import World

#: domctl sub-ops by which dom0 legitimately changes another domain (its memory, or lets
#: it run): a privileged fuzzer aims them only at domains it created and at no domain.
CHANGES_OTHERS: Final = frozenset(
    {
        XEN_DOMCTL_destroydomain,
        XEN_DOMCTL_pausedomain,
        XEN_DOMCTL_unpausedomain,
        XEN_DOMCTL_setvcpucontext,
        XEN_DOMCTL_real_mode_area,
        XEN_DOMCTL_xen970_copy_to_domain,
    }
)
_DOMCTLS: Final = (
    XEN_DOMCTL_createdomain,
    XEN_DOMCTL_destroydomain,
    XEN_DOMCTL_pausedomain,
    XEN_DOMCTL_unpausedomain,
    XEN_DOMCTL_getdomaininfo,
    XEN_DOMCTL_setvcpuaffinity,
    XEN_DOMCTL_max_mem,
    XEN_DOMCTL_setvcpucontext,
    XEN_DOMCTL_max_vcpus,
    XEN_DOMCTL_scheduler_op,
    XEN_DOMCTL_real_mode_area,
    XEN_DOMCTL_xen970_copy_to_domain,
)
#: Words worth executing more often than random bits find them: illegal, sc 0, sc 1,
#: trap, sync, dcbz/std/ld through r3..r5 (which hold the last call's result and args).
_KNOWN_WORDS: Final = (
    0x00000000,
    0x44000002,
    SC_1,
    0x7FE00008,
    0x7C0004AC,
    0x7C001FEC,
    0xF8A40000,
    0xE8A40000,
    0x90650000,
)

Args = tuple[int, ...]
Body = Callable[[Picker], Args]


def _args(*values: int) -> Args:
    out = tuple(v & MASK64 for v in values)
    return out + tuple(0 for _ in range(NR_ARGS - len(out)))


def _subop(p: Picker, known: tuple[int, ...], beyond: int) -> int:
    """A known sub-op mostly; else the next unknown ones and far beyond."""
    if p.chance(0.8):
        return p.one(known)
    return p.one([beyond, beyond + 1, beyond + p.rng.randrange(64), 0xFFFFFFFF, MASK64])


def _fill(p: Picker, layout: Layout, fields: dict[str, int]) -> bytes:
    """`layout`'s bytes: garbage, then `fields` written over it."""
    buf = bytearray(p.garbage(layout.size))
    for name, value in fields.items():
        off, width = layout.fields[name]
        buf[off : off + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "big")
    return bytes(buf)


# -- Xen calls ----------------------------------------------------------------------------
def _sched_op(p: Picker) -> Args:
    cmd = _subop(p, (0, 1, 1, SCHEDOP_shutdown, SCHEDOP_poll), 4)
    if cmd == SCHEDOP_shutdown:
        return _args(cmd, p.unreadable_handle(p.gpa()))  # readable: the fuzzer would stop
    ports = b"".join(p.port().to_bytes(4, "big") for _ in range(p.rng.randrange(4)))
    poll = SCHED_POLL.pack(ports=p.handle(ports), nr_ports=p.count(), timeout=p.timeout())
    return _args(cmd, p.handle(poll) if p.chance(0.9) else p.gpa())


def _sched_op_compat(p: Picker) -> Args:
    cmd = p.one([0, 1, 3, 4, 5, MASK64])  # not SCHEDOP_shutdown (2): see the module
    return _args(cmd, p.boundary(8))


def _set_timer_op(p: Picker) -> Args:
    return _args(p.timeout())


def _xen_version(p: Picker) -> Args:
    return _args(_subop(p, (0, 1, 2, 3, 4, 5, 6, 7), 8), p.handle(bytes(64)))


def _console_io(p: Picker) -> Args:
    count = p.one([0, 1, 80, 4095, 4096, 4097, (1 << 32) - 1, MASK64])
    return _args(_subop(p, (0, 0, 1), 2), count, p.handle(p.garbage(80)))


def _vm_assist(p: Picker) -> Args:
    return _args(_subop(p, (0, 1), 2), p.one([0, 1, 2, 3, 4, 63, 64, MASK64]))


def _vcpu_op(p: Picker) -> Args:
    return _args(_subop(p, (0, 1, 2, 3), 4), p.vcpu(), p.handle(p.garbage(64)))


def _memory_op(p: Picker) -> Args:
    cmd = _subop(p, (0, 1, 6, 6), 7) & 0xF
    start = p.one([0, 0, 1, 2, 3, 4, 5, 100, 1 << 40, (1 << 60) - 1])
    reservation = MEMORY_RESERVATION.pack(
        extent_start=p.handle(bytes(8 * p.rng.randrange(0, 6))) if p.chance(0.7) else 0,
        nr_extents=p.count(),
        extent_order=p.one([12, 12, 0, 11, 13, 24, 63, (1 << 32) - 1]),
        address_bits=p.boundary(4),
        domid=p.domid(victims=not p.world.privileged),
    )
    return _args(cmd | (start << 4), p.handle(reservation))


def _event_channel_op(p: Picker) -> Args:
    cmd = _subop(p, (0, 1, 2, 3, 4, 4, 5, 6, 7, 8, 9), 10)
    offered = p.world.offered_ports
    pick = p.rng.randrange(len(offered)) if offered and p.chance(0.5) else -1
    remote = offered[pick] if pick >= 0 else (p.domid(), p.port())
    fields: dict[int, tuple[Layout, dict[str, int]]] = {
        EVTCHNOP_alloc_unbound: (
            EVTCHN_ALLOC_UNBOUND,
            {"dom": p.domid(), "remote_dom": p.domid()},
        ),
        EVTCHNOP_bind_interdomain: (
            EVTCHN_BIND_INTERDOMAIN,
            {"remote_dom": remote[0], "remote_port": remote[1]},
        ),
        EVTCHNOP_bind_virq: (
            EVTCHN_BIND_VIRQ,
            {"virq": p.one([0, 1, 2, 3, 23, 24, (1 << 32) - 1]), "vcpu": p.vcpu()},
        ),
        EVTCHNOP_bind_pirq: (
            EVTCHN_BIND_PIRQ,
            {"pirq": p.one([0, 1, p.world.nsources - 1, p.world.nsources, (1 << 32) - 1])},
        ),
        EVTCHNOP_close: (EVTCHN_PORT, {"port": p.port()}),
        EVTCHNOP_send: (EVTCHN_PORT, {"port": p.port()}),
        EVTCHNOP_status: (EVTCHN_STATUS, {"dom": p.domid(), "port": p.port()}),
        EVTCHNOP_bind_ipi: (EVTCHN_BIND_IPI, {"vcpu": p.vcpu()}),
        EVTCHNOP_bind_vcpu: (EVTCHN_BIND_VCPU, {"port": p.port(), "vcpu": p.vcpu()}),
        EVTCHNOP_unmask: (EVTCHN_PORT, {"port": p.port()}),
    }
    layout, values = fields.get(cmd, (EVTCHN_STATUS, {}))
    return _args(cmd, p.handle(_fill(p, layout, values)))


def _grant_op(p: Picker, cmd: int) -> tuple[Layout, dict[str, int]]:
    w = p.world
    if cmd == GNTTABOP_map_grant_ref:
        dom, ref = p.grant()
        slot = p.one([0, 1, 1023, 1024]) if p.chance(0.5) else 0
        host = 0 if p.chance(0.3) else p.one([p.gpa(), (1 << 34) + (slot << 12)])
        flags = p.one([2, 3, 6, 7, 1, 0, 8 | 2, 16 | 2, p.bits(32)])
        return GNTTAB_MAP_GRANT_REF, {"host_addr": host, "flags": flags, "ref": ref, "dom": dom}
    if cmd == GNTTABOP_unmap_grant_ref:
        handle = p.one([*w.grant_handles, 0, 1, 1 << 16, (1 << 32) - 1])
        host = p.one([p.gpa(), (1 << 34) + (p.one([*w.foreign_slots, 0, 1024]) << 12)])
        return GNTTAB_UNMAP_GRANT_REF, {"host_addr": host, "dev_bus_addr": 0, "handle": handle}
    if cmd == GNTTABOP_setup_table:
        nr = p.one([0, 1, 4, 5, (1 << 32) - 1])
        fields = {"dom": p.domid(), "nr_frames": nr, "frame_list": p.handle(bytes(40))}
        return GNTTAB_SETUP_TABLE, fields
    if cmd == GNTTABOP_transfer:
        dom, ref = p.grant()
        return GNTTAB_TRANSFER, {"mfn": p.pfn(), "domid": dom, "ref": ref}
    if cmd == GNTTABOP_copy:
        flags = p.rng.randrange(4) if p.chance(0.9) else p.bits(16)
        length = p.one([0, 1, 8, 4096, 4097, 0xFFFF]) if p.chance(0.3) else p.rng.randrange(4097)
        fields = {"flags": flags, "len": length}
        for side, is_gref in (("source", flags & 1), ("dest", flags & 2)):
            if is_gref:
                fields[f"{side}_domid"], fields[f"{side}_ref"] = p.grant()
            else:
                # By frame number: dom0 may name any domain; never a victim as the
                # destination (a privileged write into another domain, see the module).
                victims = side == "source" or not w.privileged
                fields[f"{side}_domid"] = p.domid(victims=victims)
                fields[f"{side}_gmfn"] = p.pfn(buffer=side == "dest")
            fields[f"{side}_offset"] = (
                p.one([0, 8, 4088, 4095, 4096, 0xFFFF])
                if p.chance(0.3)
                else p.rng.randrange(max(4097 - length, 1))
            )
        return GNTTAB_COPY, fields
    return GNTTAB_QUERY_SIZE, {"dom": p.domid()}


_GRANT_LAYOUTS: Final = {
    GNTTABOP_map_grant_ref: GNTTAB_MAP_GRANT_REF,
    GNTTABOP_unmap_grant_ref: GNTTAB_UNMAP_GRANT_REF,
    GNTTABOP_setup_table: GNTTAB_SETUP_TABLE,
    GNTTABOP_transfer: GNTTAB_TRANSFER,
    GNTTABOP_copy: GNTTAB_COPY,
    GNTTABOP_query_size: GNTTAB_QUERY_SIZE,
}


def _grant_table_op(p: Picker) -> Args:
    cmd = _subop(p, tuple(_GRANT_LAYOUTS), 7)
    n = p.one([1, 1, 1, 2, 3, 8]) if p.chance(0.85) else p.count()
    ops = []
    for _ in range(min(n, 8)):
        layout, fields = _grant_op(p, cmd if cmd in _GRANT_LAYOUTS else GNTTABOP_query_size)
        ops.append(_fill(p, layout, fields))
    return _args(cmd, p.handle(b"".join(ops)), n)


def _physdev_op(p: Picker) -> Args:
    irq = p.one([0, 1, p.world.nsources - 1, p.world.nsources, (1 << 32) - 1])
    return _args(_subop(p, (5, 12), 13), p.handle(PHYSDEV_EOI.pack(irq=irq) + bytes(4)))


def _sysctl(p: Picker) -> Args:
    cmd = _subop(p, (1, 2, 3, 4, 5, 6), 7)
    version = XEN_SYSCTL_INTERFACE_VERSION if p.chance(0.9) else p.boundary(4)
    fields = {
        "cmd": cmd,
        "interface_version": version,
        "readconsole_clear": p.one([0, 1]) if cmd == 1 else p.boundary(2),
    }
    if cmd == 1:
        fields["readconsole_buffer"] = p.handle(bytes(p.rng.randrange(0, 200)))
        fields["readconsole_count"] = p.one([0, 16, 200, 4096, (1 << 32) - 1])
    if cmd == 6:
        fields["getdomaininfolist_first_domain"] = p.domid()
        fields["getdomaininfolist_max_domains"] = p.count()
        fields["getdomaininfolist_buffer"] = p.handle(bytes(88 * p.rng.randrange(0, 4)))
    return _args(p.handle(_fill(p, SYSCTL, fields)))


def _domctl(p: Picker) -> Args:
    w = p.world
    cmd = _subop(p, _DOMCTLS, 17)
    if cmd == 17 and p.chance(0.5):
        cmd = p.one([0x970, 0x971, 25, 26, 27])
    safe = not (w.privileged and cmd in CHANGES_OTHERS)
    fields: dict[str, int] = {
        "cmd": cmd,
        "interface_version": XEN_DOMCTL_INTERFACE_VERSION if p.chance(0.9) else p.boundary(4),
        "domain": p.domid(victims=safe),
    }
    if cmd == XEN_DOMCTL_createdomain:
        fields["domain"] = p.one([0, 0, w.fuzzer, max(w.domains), max(w.domains) + 1, p.domid()])
    elif cmd == XEN_DOMCTL_max_vcpus:
        fields["max_vcpus"] = p.one([0, 1, 2, 32, 33, (1 << 32) - 1])
    elif cmd == XEN_DOMCTL_max_mem:
        fields["max_memkb"] = p.one([0, 3, 4, 65536, 1 << 20, 1 << 40, MASK64])
    elif cmd == XEN_DOMCTL_real_mode_area:
        fields["rma_log"] = p.one([26, 27, 28, 30, 34, 38, 0, 25, 64, (1 << 32) - 1])
    elif cmd == XEN_DOMCTL_setvcpuaffinity:
        fields["vcpu"] = p.vcpu()
        fields["cpumap_bitmap"] = p.handle(p.garbage(8))
        fields["cpumap_nr_cpus"] = p.one([0, 1, 2, 8, 64, 4096, (1 << 32) - 1])
    elif cmd == XEN_DOMCTL_scheduler_op:
        fields["sched_id"] = XEN_SCHEDULER_CREDIT if p.chance(0.8) else p.boundary(4)
        fields["sched_cmd"] = p.one([0, 1, 2, (1 << 32) - 1])
        fields["sched_weight"] = p.boundary(2)
        fields["sched_cap"] = p.boundary(2)
    elif cmd == XEN_DOMCTL_setvcpucontext:
        if fields["domain"] == w.fuzzer:
            fields["domain"] = max(w.domains) + 1  # its own VCPUs: see the module docstring
        context = VCPU_GUEST_CONTEXT.size
        fields["vcpu"] = p.vcpu()
        fields["vcpu_ctxt"] = p.handle(p.garbage(context)[: p.one([context, context, 8])])
    elif cmd == XEN_DOMCTL_xen970_copy_to_domain:
        fields["copy_dst_gpa"] = p.gpa()
        fields["copy_nbytes"] = p.one([0, 1, 64, 4096, 8192, 1 << 32, MASK64])
        fields["copy_src"] = p.handle(p.garbage(64))
    return _args(p.handle(_fill(p, DOMCTL, fields)))


def _unknown_xen(p: Picker) -> Args:
    return _args(*(p.boundary(8) for _ in range(3)))


# -- PAPR hcalls --------------------------------------------------------------------------
def _pte_hi(p: Picker) -> int:
    """A first PTE word: an AVPN with V, sometimes L (16 MiB) or H, or garbage."""
    if p.chance(0.15):
        return p.bits(64)
    avpn = p.bits(57) << 7
    return avpn | 1 | p.one([0, 0, 4, 2, 6])


def _pte_lo(p: Picker) -> int:
    """A second PTE word: an RPN that is a pfn (own, foreign, grant, I/O, someone else's)
    with PP, WIMG and R/C bits."""
    return (p.pfn() << 12) | p.one([0x2, 0x3, 0x0, 0x12, 0x2A, 0x190, p.bits(12)])


def _ptex(p: Picker, *, own_large: bool = True) -> int:
    """An HTAB index: group starts and ends, random groups, the end and beyond; with
    `own_large=False` never one of the fuzzer's own 16 MiB entries (removing or
    protecting the linear map its program runs in would only stop the fuzzer itself)."""
    n = p.world.htab_entries
    ptex = p.one([0, 7, 8 * p.rng.randrange(max(n // 8, 1)), n - 1, n, n + 8, MASK64])
    if not own_large and ptex in p.world.large_ptes:
        return n
    return ptex


def _papr_flags(p: Picker, *extra: int) -> int:
    bits = 0
    for flag in (H_EXACT, H_AVPN, H_ANDCOND, H_ZERO_PAGE, *extra):
        if p.chance(0.25):
            bits |= flag
    return bits if p.chance(0.9) else p.bits(64)


def _h_enter(p: Picker) -> Args:
    return _args(_papr_flags(p), _ptex(p), _pte_hi(p), _pte_lo(p))


def _h_pte_op(p: Picker) -> Args:
    """H_REMOVE / H_READ / H_PROTECT / H_CLEAR_REF / H_CLEAR_MOD: flags, ptex, avpn."""
    return _args(_papr_flags(p, 0x3, 0x4), _ptex(p, own_large=False), _pte_hi(p))


def _h_put_tce(p: Picker) -> Args:
    liobn = p.one([*p.world.liobns, 0, 0xFF, 0x100, 0x101, (1 << 32) - 1, MASK64])
    ioba = p.one([0, 0x1000, 0x3FF000, 0x400000, 0x401000, 0xFFF, MASK64])
    tce = (p.pfn() << 12) | p.one([0, 1, 2, 3, 3, 0x7FF, 0x800])
    return _args(liobn, ioba, tce)


def _h_term(p: Picker) -> Args:
    return _args(p.boundary(8), p.one([0, 1, 8, 16, 17, MASK64]), p.bits(64), p.bits(64))


def _h_set_dabr(p: Picker) -> Args:
    return _args(p.bits(64))


def _papr_other(p: Picker) -> Args:
    return _args(*(p.boundary(8) for _ in range(4)))


#: (weight, r3, body) of every call a domU draws; dom0 draws domctl and sysctl more often.
_CALLS: Final[tuple[tuple[int, int, Body], ...]] = (
    (4, xen_mark(HYPERVISOR_sched_op), _sched_op),
    (2, xen_mark(HYPERVISOR_sched_op_compat), _sched_op_compat),
    (3, xen_mark(HYPERVISOR_set_timer_op), _set_timer_op),
    (3, xen_mark(HYPERVISOR_xen_version), _xen_version),
    (3, xen_mark(HYPERVISOR_console_io), _console_io),
    (10, xen_mark(HYPERVISOR_grant_table_op), _grant_table_op),
    (2, xen_mark(HYPERVISOR_vm_assist), _vm_assist),
    (4, xen_mark(HYPERVISOR_vcpu_op), _vcpu_op),
    (12, xen_mark(HYPERVISOR_event_channel_op), _event_channel_op),
    (3, xen_mark(HYPERVISOR_physdev_op), _physdev_op),
    (4, xen_mark(HYPERVISOR_sysctl), _sysctl),
    (6, xen_mark(HYPERVISOR_domctl), _domctl),
    (8, xen_mark(HYPERVISOR_memory_op), _memory_op),
    (10, H_ENTER, _h_enter),
    (4, H_REMOVE, _h_pte_op),
    (3, H_READ, _h_pte_op),
    (4, H_PROTECT, _h_pte_op),
    (2, H_CLEAR_REF, _h_pte_op),
    (2, H_CLEAR_MOD, _h_pte_op),
    (6, H_PUT_TCE, _h_put_tce),
    (3, H_GET_TCE, _h_put_tce),
    (1, H_SET_DABR, _h_set_dabr),
    (1, H_GET_TERM_CHAR, _h_term),
    (2, H_PUT_TERM_CHAR, _h_term),
)
_PRIVILEGED_WEIGHT: Final = {xen_mark(HYPERVISOR_domctl): 20, xen_mark(HYPERVISOR_sysctl): 8}


def _r3_unknown(p: Picker) -> int:
    """A call number no handler has: Xen numbers beyond the table, PAPR tokens that are
    valid but unimplemented, not multiples of 4, beyond the last, or a half mark."""
    return p.one(
        [
            xen_mark(p.rng.randrange(0, 64)),
            xen_mark(p.bits(16)),
            4 * p.rng.randrange(0, PAPR_MAX_TOKEN // 4 + 1),
            PAPR_MAX_TOKEN + 4,
            p.rng.randrange(0, 0x200) | 1,
            XEN_MARK & 0xFFFFFFFF | 12,
            p.bits(64),
        ]
    )


def random_words(p: Picker, *, all_words: bool = False) -> tuple[int, ...]:
    """0 to 4 instruction words (mostly none or one) the guest runs after a call."""
    n = p.weighted(((50, 0), (30, 1), (15, 2), (5, 4)))
    words: list[int] = []
    while len(words) < n:
        word = p.one(_KNOWN_WORDS) if p.chance(0.1) else p.bits(32)
        if word_allowed(word, all_words=all_words):
            words.append(word)
    return tuple(words)


def generate(world: World, seed: int, slot: int, *, all_words: bool = False) -> Call:
    """The hostile call drawn from `seed` for `world`, its memory in the slot at `slot`."""
    p = Picker(world, random.Random(seed), slot)
    table = [
        (_PRIVILEGED_WEIGHT.get(r3, w) if world.privileged else w, (r3, body))
        for w, r3, body in _CALLS
    ]
    total = sum(w for w, _ in table) + 3
    at = p.rng.randrange(total)
    for w, (r3, body) in table:
        if at < w:
            args = body(p)
            break
        at -= w
    else:
        r3 = _r3_unknown(p)
        args = _unknown_xen(p) if r3 & XEN_MARK == XEN_MARK else _papr_other(p)
        if r3 & XEN_MARK == XEN_MARK and r3 & 0xFFFF == HYPERVISOR_sched_op_compat:
            r3 = xen_mark(99)  # sched_op_compat's shutdown is left out (module docstring)
    words = random_words(p, all_words=all_words)
    return Call(r3, args, tuple(p.writes), words)


__all__ = ["CHANGES_OTHERS", "generate", "random_words"]
